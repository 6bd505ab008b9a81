package ublk

// Kernel ABI mirrored field by field from the Linux 6.12 uapi headers
// include/uapi/linux/io_uring.h and include/uapi/linux/ublk_cmd.h
// (package linux-headers-6.12.*-common). uapi_test.go checks every size and
// field offset against the numbers of those headers. Do not reorder fields.

// ---- include/uapi/linux/io_uring.h ----

// io_uring_setup flags (IORING_SETUP_*).
const (
	setupSQE128       = 1 << 10 // IORING_SETUP_SQE128: 128-byte SQEs
	setupCQSize       = 1 << 3  // IORING_SETUP_CQSIZE: cq_entries is valid
	setupCoopTaskrun  = 1 << 8  // IORING_SETUP_COOP_TASKRUN: no IPI to run task work
	setupSingleIssuer = 1 << 12 // IORING_SETUP_SINGLE_ISSUER: one task submits
	setupDeferTaskrun = 1 << 13 // IORING_SETUP_DEFER_TASKRUN: task work runs in io_uring_enter(GETEVENTS)
)

// io_uring_enter flags (IORING_ENTER_*).
const enterGetEvents = 1 << 0 // IORING_ENTER_GETEVENTS

// IORING_FEAT_* bits of io_uring_params.features.
const featSingleMmap = 1 << 0 // IORING_FEAT_SINGLE_MMAP

// mmap offsets of the ring regions (IORING_OFF_*).
const (
	offSQRing = 0x0        // IORING_OFF_SQ_RING
	offCQRing = 0x8000000  // IORING_OFF_CQ_RING
	offSQEs   = 0x10000000 // IORING_OFF_SQES
)

// io_uring_register opcodes.
const (
	registerEventfd   = 4 // IORING_REGISTER_EVENTFD
	unregisterEventfd = 5 // IORING_UNREGISTER_EVENTFD
)

// Opcodes (enum io_uring_op). Only the ones this package uses.
const (
	OpNop      = 0  // IORING_OP_NOP
	OpPollAdd  = 6  // IORING_OP_POLL_ADD
	OpRead     = 22 // IORING_OP_READ
	OpWrite    = 23 // IORING_OP_WRITE
	OpUringCmd = 46 // IORING_OP_URING_CMD
)

// SQE is struct io_uring_sqe (64 bytes). In a ring set up with SQE128 each
// slot is 128 bytes and the command area (sqe->cmd) is the 80 bytes from
// offset 48; in a plain ring it is the 16 bytes from offset 48.
type SQE struct {
	Opcode      uint8  // opcode
	Flags       uint8  // IOSQE_* flags
	Ioprio      uint16 // ioprio
	Fd          int32  // fd
	Off         uint64 // off / addr2 / {cmd_op u32, __pad1 u32}
	Addr        uint64 // addr / splice_off_in
	Len         uint32 // len
	OpFlags     uint32 // rw_flags / poll32_events / uring_cmd_flags / ...
	UserData    uint64 // user_data
	BufIndex    uint16 // buf_index / buf_group (packed)
	Personality uint16 // personality
	SpliceFdIn  int32  // splice_fd_in / file_index / optlen
	Addr3       uint64 // addr3 (start of cmd[])
	pad2        uint64 // __pad2[1]
}

// sqeCmdOffset is offsetof(struct io_uring_sqe, cmd).
const sqeCmdOffset = 48

// CQE is struct io_uring_cqe (16 bytes, no CQE32).
type CQE struct {
	UserData uint64 // user_data
	Res      int32  // res
	Flags    uint32 // IORING_CQE_F_* flags
}

// sqringOffsets is struct io_sqring_offsets.
type sqringOffsets struct {
	Head        uint32
	Tail        uint32
	RingMask    uint32
	RingEntries uint32
	Flags       uint32
	Dropped     uint32
	Array       uint32
	Resv1       uint32
	UserAddr    uint64
}

// cqringOffsets is struct io_cqring_offsets.
type cqringOffsets struct {
	Head        uint32
	Tail        uint32
	RingMask    uint32
	RingEntries uint32
	Overflow    uint32
	Cqes        uint32
	Flags       uint32
	Resv1       uint32
	UserAddr    uint64
}

// uringParams is struct io_uring_params (120 bytes).
type uringParams struct {
	SQEntries    uint32
	CQEntries    uint32
	Flags        uint32
	SQThreadCPU  uint32
	SQThreadIdle uint32
	Features     uint32
	WqFd         uint32
	Resv         [3]uint32
	SQOff        sqringOffsets
	CQOff        cqringOffsets
}

// ---- include/uapi/linux/ublk_cmd.h ----

// Legacy command numbers; the ioctl-encoded opcodes below embed them as
// _IOC_NR.
const (
	cmdGetDevInfo        = 0x02 // UBLK_CMD_GET_DEV_INFO
	cmdAddDev            = 0x04 // UBLK_CMD_ADD_DEV
	cmdDelDev            = 0x05 // UBLK_CMD_DEL_DEV
	cmdStartDev          = 0x06 // UBLK_CMD_START_DEV
	cmdStopDev           = 0x07 // UBLK_CMD_STOP_DEV
	cmdSetParams         = 0x08 // UBLK_CMD_SET_PARAMS
	cmdGetParams         = 0x09 // UBLK_CMD_GET_PARAMS
	cmdStartUserRecovery = 0x10 // UBLK_CMD_START_USER_RECOVERY
	cmdEndUserRecovery   = 0x11 // UBLK_CMD_END_USER_RECOVERY
	cmdGetFeatures       = 0x13 // nr of UBLK_U_CMD_GET_FEATURES
	cmdDelDevAsync       = 0x14 // nr of UBLK_U_CMD_DEL_DEV_ASYNC (6.9+)
	ioFetchReq           = 0x20 // UBLK_IO_FETCH_REQ
	ioCommitAndFetchReq  = 0x21 // UBLK_IO_COMMIT_AND_FETCH_REQ
	ublkIoctlType        = 'u'
	sizeofCtrlCmd        = 32 // sizeof(struct ublksrv_ctrl_cmd)
	sizeofIOCmd          = 16 // sizeof(struct ublksrv_io_cmd)
	iocWrite             = 1  // _IOC_WRITE
	iocRead              = 2  // _IOC_READ
	ublkFeaturesLen      = 8  // UBLK_FEATURES_LEN
	ctrlQueueIDNone      = 0xFFFF
	devIDAny             = 0xFFFFFFFF
)

// ioc mirrors the _IOC macro of include/uapi/asm-generic/ioctl.h.
func ioc(dir, typ, nr, size uint32) uint32 {
	return dir<<30 | size<<16 | typ<<8 | nr
}

// The ioctl-encoded opcodes (UBLK_U_CMD_*, UBLK_U_IO_*).
var (
	uCmdGetDevInfo        = ioc(iocRead, ublkIoctlType, cmdGetDevInfo, sizeofCtrlCmd)
	uCmdAddDev            = ioc(iocRead|iocWrite, ublkIoctlType, cmdAddDev, sizeofCtrlCmd)
	uCmdDelDev            = ioc(iocRead|iocWrite, ublkIoctlType, cmdDelDev, sizeofCtrlCmd)
	uCmdStartDev          = ioc(iocRead|iocWrite, ublkIoctlType, cmdStartDev, sizeofCtrlCmd)
	uCmdStopDev           = ioc(iocRead|iocWrite, ublkIoctlType, cmdStopDev, sizeofCtrlCmd)
	uCmdSetParams         = ioc(iocRead|iocWrite, ublkIoctlType, cmdSetParams, sizeofCtrlCmd)
	uCmdGetParams         = ioc(iocRead, ublkIoctlType, cmdGetParams, sizeofCtrlCmd)
	uCmdStartUserRecovery = ioc(iocRead|iocWrite, ublkIoctlType, cmdStartUserRecovery, sizeofCtrlCmd)
	uCmdEndUserRecovery   = ioc(iocRead|iocWrite, ublkIoctlType, cmdEndUserRecovery, sizeofCtrlCmd)
	uCmdGetFeatures       = ioc(iocRead, ublkIoctlType, cmdGetFeatures, sizeofCtrlCmd)
	uCmdDelDevAsync       = ioc(iocRead, ublkIoctlType, cmdDelDevAsync, sizeofCtrlCmd)
	uIOFetchReq           = ioc(iocRead|iocWrite, ublkIoctlType, ioFetchReq, sizeofIOCmd)
	uIOCommitAndFetchReq  = ioc(iocRead|iocWrite, ublkIoctlType, ioCommitAndFetchReq, sizeofIOCmd)
)

// Feature flags (UBLK_F_*), as reported by GET_FEATURES and negotiated in
// ublksrv_ctrl_dev_info.flags.
const (
	FeatureSupportZeroCopy     uint64 = 1 << 0 // UBLK_F_SUPPORT_ZERO_COPY
	FeatureURingCmdCompInTask  uint64 = 1 << 1 // UBLK_F_URING_CMD_COMP_IN_TASK
	FeatureNeedGetData         uint64 = 1 << 2 // UBLK_F_NEED_GET_DATA
	FeatureUserRecovery        uint64 = 1 << 3 // UBLK_F_USER_RECOVERY
	FeatureUserRecoveryReissue uint64 = 1 << 4 // UBLK_F_USER_RECOVERY_REISSUE
	FeatureUnprivilegedDev     uint64 = 1 << 5 // UBLK_F_UNPRIVILEGED_DEV
	FeatureCmdIoctlEncode      uint64 = 1 << 6 // UBLK_F_CMD_IOCTL_ENCODE
	FeatureUserCopy            uint64 = 1 << 7 // UBLK_F_USER_COPY
	FeatureZoned               uint64 = 1 << 8 // UBLK_F_ZONED
	FeatureUserRecoveryFailIO  uint64 = 1 << 9 // UBLK_F_USER_RECOVERY_FAIL_IO (6.13+)
)

// featureNames names the UBLK_F_* bits for messages and `ublktest features`.
var featureNames = []struct {
	Bit  uint64
	Name string
}{
	{FeatureSupportZeroCopy, "UBLK_F_SUPPORT_ZERO_COPY"},
	{FeatureURingCmdCompInTask, "UBLK_F_URING_CMD_COMP_IN_TASK"},
	{FeatureNeedGetData, "UBLK_F_NEED_GET_DATA"},
	{FeatureUserRecovery, "UBLK_F_USER_RECOVERY"},
	{FeatureUserRecoveryReissue, "UBLK_F_USER_RECOVERY_REISSUE"},
	{FeatureUnprivilegedDev, "UBLK_F_UNPRIVILEGED_DEV"},
	{FeatureCmdIoctlEncode, "UBLK_F_CMD_IOCTL_ENCODE"},
	{FeatureUserCopy, "UBLK_F_USER_COPY"},
	{FeatureZoned, "UBLK_F_ZONED"},
	{FeatureUserRecoveryFailIO, "UBLK_F_USER_RECOVERY_FAIL_IO"},
}

// Device states (UBLK_S_DEV_*).
const (
	StateDead     = 0 // UBLK_S_DEV_DEAD
	StateLive     = 1 // UBLK_S_DEV_LIVE
	StateQuiesced = 2 // UBLK_S_DEV_QUIESCED
)

// I/O operations (UBLK_IO_OP_*) and flags (UBLK_IO_F_*) of an io descriptor.
const (
	IOOpRead        = 0 // UBLK_IO_OP_READ
	IOOpWrite       = 1 // UBLK_IO_OP_WRITE
	IOOpFlush       = 2 // UBLK_IO_OP_FLUSH
	IOOpDiscard     = 3 // UBLK_IO_OP_DISCARD
	IOOpWriteSame   = 4 // UBLK_IO_OP_WRITE_SAME
	IOOpWriteZeroes = 5 // UBLK_IO_OP_WRITE_ZEROES

	IOFlagFUA     = 1 << 13 // UBLK_IO_F_FUA
	IOFlagNoUnmap = 1 << 15 // UBLK_IO_F_NOUNMAP
)

// Limits and result codes.
const (
	MaxQueueDepth = 4096 // UBLK_MAX_QUEUE_DEPTH
	MaxQueues     = 4096 // UBLK_MAX_NR_QUEUES
	ioResOK       = 0    // UBLK_IO_RES_OK
	sectorShift   = 9    // descriptors always count 512-byte sectors
	sizeofIODesc  = 24   // sizeof(struct ublksrv_io_desc)
)

// Basic parameter attributes (UBLK_ATTR_*).
const (
	AttrReadOnly      = 1 << 0 // UBLK_ATTR_READ_ONLY
	AttrRotational    = 1 << 1 // UBLK_ATTR_ROTATIONAL
	AttrVolatileCache = 1 << 2 // UBLK_ATTR_VOLATILE_CACHE
	AttrFUA           = 1 << 3 // UBLK_ATTR_FUA
)

// Parameter types (UBLK_PARAM_TYPE_*).
const (
	paramTypeBasic   = 1 << 0 // UBLK_PARAM_TYPE_BASIC
	paramTypeDiscard = 1 << 1 // UBLK_PARAM_TYPE_DISCARD
	paramTypeDevt    = 1 << 2 // UBLK_PARAM_TYPE_DEVT
)

// ctrlCmd is struct ublksrv_ctrl_cmd (32 bytes), carried in the SQE128
// command area of a control command.
type ctrlCmd struct {
	DevID      uint32
	QueueID    uint16
	Len        uint16
	Addr       uint64
	Data       uint64 // data[1]
	DevPathLen uint16
	Pad        uint16
	Reserved   uint32
}

// DevInfo is struct ublksrv_ctrl_dev_info (64 bytes).
type DevInfo struct {
	NrHWQueues    uint16
	QueueDepth    uint16
	State         uint16
	Pad0          uint16
	MaxIOBufBytes uint32
	DevID         uint32
	UblksrvPID    int32
	Pad1          uint32
	Flags         uint64
	UblksrvFlags  uint64 // for the server's own use, ignored by the driver
	OwnerUID      uint32
	OwnerGID      uint32
	Reserved1     uint64
	Reserved2     uint64
}

// ioDesc is struct ublksrv_io_desc (24 bytes), one per tag in the
// read-only descriptor array mmapped from /dev/ublkcN.
type ioDesc struct {
	OpFlags     uint32 // op: bits 0-7, flags: bits 8-31
	NrSectors   uint32 // nr_sectors / nr_zones
	StartSector uint64
	Addr        uint64
}

// ioCmd is struct ublksrv_io_cmd (16 bytes), carried in the command area
// of FETCH_REQ / COMMIT_AND_FETCH_REQ.
type ioCmd struct {
	QID    uint16
	Tag    uint16
	Result int32
	Addr   uint64 // addr / zone_append_lba
}

// paramBasic is struct ublk_param_basic (32 bytes).
type paramBasic struct {
	Attrs            uint32
	LogicalBSShift   uint8
	PhysicalBSShift  uint8
	IOOptShift       uint8
	IOMinShift       uint8
	MaxSectors       uint32
	ChunkSectors     uint32
	DevSectors       uint64
	VirtBoundaryMask uint64
}

// paramDiscard is struct ublk_param_discard (20 bytes).
type paramDiscard struct {
	DiscardAlignment      uint32
	DiscardGranularity    uint32
	MaxDiscardSectors     uint32
	MaxWriteZeroesSectors uint32
	MaxDiscardSegments    uint16
	Reserved0             uint16
}

// paramDevt is struct ublk_param_devt (16 bytes).
type paramDevt struct {
	CharMajor uint32
	CharMinor uint32
	DiskMajor uint32
	DiskMinor uint32
}

// paramZoned is struct ublk_param_zoned (32 bytes).
type paramZoned struct {
	MaxOpenZones         uint32
	MaxActiveZones       uint32
	MaxZoneAppendSectors uint32
	Reserved             [20]uint8
}

// params is struct ublk_params (112 bytes).
type params struct {
	Len     uint32
	Types   uint32
	Basic   paramBasic
	Discard paramDiscard
	Devt    paramDevt
	Zoned   paramZoned
}
