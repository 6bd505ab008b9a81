package ublk

import (
	"testing"
	"unsafe"
)

// The expected numbers were printed by a C program compiled against the
// Linux 6.12 uapi headers io_uring.h and ublk_cmd.h
// (linux-headers-6.12.117+deb12-common) with sizeof/offsetof.
func TestUAPILayout(t *testing.T) {
	var (
		sqe SQE
		cqe CQE
		sqo sqringOffsets
		cqo cqringOffsets
		up  uringParams
		cc  ctrlCmd
		di  DevInfo
		iod ioDesc
		ioc ioCmd
		pb  paramBasic
		pd  paramDiscard
		pdt paramDevt
		pz  paramZoned
		pp  params
	)
	tests := []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"sizeof(io_uring_sqe)", unsafe.Sizeof(sqe), 64},
		{"io_uring_sqe.opcode", unsafe.Offsetof(sqe.Opcode), 0},
		{"io_uring_sqe.flags", unsafe.Offsetof(sqe.Flags), 1},
		{"io_uring_sqe.ioprio", unsafe.Offsetof(sqe.Ioprio), 2},
		{"io_uring_sqe.fd", unsafe.Offsetof(sqe.Fd), 4},
		{"io_uring_sqe.off/cmd_op", unsafe.Offsetof(sqe.Off), 8},
		{"io_uring_sqe.addr", unsafe.Offsetof(sqe.Addr), 16},
		{"io_uring_sqe.len", unsafe.Offsetof(sqe.Len), 24},
		{"io_uring_sqe.rw_flags/poll32_events", unsafe.Offsetof(sqe.OpFlags), 28},
		{"io_uring_sqe.user_data", unsafe.Offsetof(sqe.UserData), 32},
		{"io_uring_sqe.buf_index", unsafe.Offsetof(sqe.BufIndex), 40},
		{"io_uring_sqe.personality", unsafe.Offsetof(sqe.Personality), 42},
		{"io_uring_sqe.splice_fd_in", unsafe.Offsetof(sqe.SpliceFdIn), 44},
		{"io_uring_sqe.addr3/cmd", unsafe.Offsetof(sqe.Addr3), 48},
		{"sqeCmdOffset", sqeCmdOffset, 48},

		{"sizeof(io_uring_cqe)", unsafe.Sizeof(cqe), 16},
		{"io_uring_cqe.user_data", unsafe.Offsetof(cqe.UserData), 0},
		{"io_uring_cqe.res", unsafe.Offsetof(cqe.Res), 8},
		{"io_uring_cqe.flags", unsafe.Offsetof(cqe.Flags), 12},

		{"sizeof(io_sqring_offsets)", unsafe.Sizeof(sqo), 40},
		{"io_sqring_offsets.head", unsafe.Offsetof(sqo.Head), 0},
		{"io_sqring_offsets.tail", unsafe.Offsetof(sqo.Tail), 4},
		{"io_sqring_offsets.ring_mask", unsafe.Offsetof(sqo.RingMask), 8},
		{"io_sqring_offsets.ring_entries", unsafe.Offsetof(sqo.RingEntries), 12},
		{"io_sqring_offsets.flags", unsafe.Offsetof(sqo.Flags), 16},
		{"io_sqring_offsets.dropped", unsafe.Offsetof(sqo.Dropped), 20},
		{"io_sqring_offsets.array", unsafe.Offsetof(sqo.Array), 24},
		{"io_sqring_offsets.user_addr", unsafe.Offsetof(sqo.UserAddr), 32},

		{"sizeof(io_cqring_offsets)", unsafe.Sizeof(cqo), 40},
		{"io_cqring_offsets.head", unsafe.Offsetof(cqo.Head), 0},
		{"io_cqring_offsets.tail", unsafe.Offsetof(cqo.Tail), 4},
		{"io_cqring_offsets.ring_mask", unsafe.Offsetof(cqo.RingMask), 8},
		{"io_cqring_offsets.ring_entries", unsafe.Offsetof(cqo.RingEntries), 12},
		{"io_cqring_offsets.overflow", unsafe.Offsetof(cqo.Overflow), 16},
		{"io_cqring_offsets.cqes", unsafe.Offsetof(cqo.Cqes), 20},
		{"io_cqring_offsets.flags", unsafe.Offsetof(cqo.Flags), 24},
		{"io_cqring_offsets.user_addr", unsafe.Offsetof(cqo.UserAddr), 32},

		{"sizeof(io_uring_params)", unsafe.Sizeof(up), 120},
		{"io_uring_params.sq_entries", unsafe.Offsetof(up.SQEntries), 0},
		{"io_uring_params.cq_entries", unsafe.Offsetof(up.CQEntries), 4},
		{"io_uring_params.flags", unsafe.Offsetof(up.Flags), 8},
		{"io_uring_params.sq_thread_cpu", unsafe.Offsetof(up.SQThreadCPU), 12},
		{"io_uring_params.sq_thread_idle", unsafe.Offsetof(up.SQThreadIdle), 16},
		{"io_uring_params.features", unsafe.Offsetof(up.Features), 20},
		{"io_uring_params.wq_fd", unsafe.Offsetof(up.WqFd), 24},
		{"io_uring_params.resv", unsafe.Offsetof(up.Resv), 28},
		{"io_uring_params.sq_off", unsafe.Offsetof(up.SQOff), 40},
		{"io_uring_params.cq_off", unsafe.Offsetof(up.CQOff), 80},

		{"sizeof(ublksrv_ctrl_cmd)", unsafe.Sizeof(cc), 32},
		{"ublksrv_ctrl_cmd.dev_id", unsafe.Offsetof(cc.DevID), 0},
		{"ublksrv_ctrl_cmd.queue_id", unsafe.Offsetof(cc.QueueID), 4},
		{"ublksrv_ctrl_cmd.len", unsafe.Offsetof(cc.Len), 6},
		{"ublksrv_ctrl_cmd.addr", unsafe.Offsetof(cc.Addr), 8},
		{"ublksrv_ctrl_cmd.data", unsafe.Offsetof(cc.Data), 16},
		{"ublksrv_ctrl_cmd.dev_path_len", unsafe.Offsetof(cc.DevPathLen), 24},
		{"ublksrv_ctrl_cmd.pad", unsafe.Offsetof(cc.Pad), 26},
		{"ublksrv_ctrl_cmd.reserved", unsafe.Offsetof(cc.Reserved), 28},

		{"sizeof(ublksrv_ctrl_dev_info)", unsafe.Sizeof(di), 64},
		{"ublksrv_ctrl_dev_info.nr_hw_queues", unsafe.Offsetof(di.NrHWQueues), 0},
		{"ublksrv_ctrl_dev_info.queue_depth", unsafe.Offsetof(di.QueueDepth), 2},
		{"ublksrv_ctrl_dev_info.state", unsafe.Offsetof(di.State), 4},
		{"ublksrv_ctrl_dev_info.pad0", unsafe.Offsetof(di.Pad0), 6},
		{"ublksrv_ctrl_dev_info.max_io_buf_bytes", unsafe.Offsetof(di.MaxIOBufBytes), 8},
		{"ublksrv_ctrl_dev_info.dev_id", unsafe.Offsetof(di.DevID), 12},
		{"ublksrv_ctrl_dev_info.ublksrv_pid", unsafe.Offsetof(di.UblksrvPID), 16},
		{"ublksrv_ctrl_dev_info.pad1", unsafe.Offsetof(di.Pad1), 20},
		{"ublksrv_ctrl_dev_info.flags", unsafe.Offsetof(di.Flags), 24},
		{"ublksrv_ctrl_dev_info.ublksrv_flags", unsafe.Offsetof(di.UblksrvFlags), 32},
		{"ublksrv_ctrl_dev_info.owner_uid", unsafe.Offsetof(di.OwnerUID), 40},
		{"ublksrv_ctrl_dev_info.owner_gid", unsafe.Offsetof(di.OwnerGID), 44},
		{"ublksrv_ctrl_dev_info.reserved1", unsafe.Offsetof(di.Reserved1), 48},
		{"ublksrv_ctrl_dev_info.reserved2", unsafe.Offsetof(di.Reserved2), 56},

		{"sizeof(ublksrv_io_desc)", unsafe.Sizeof(iod), 24},
		{"ublksrv_io_desc.op_flags", unsafe.Offsetof(iod.OpFlags), 0},
		{"ublksrv_io_desc.nr_sectors", unsafe.Offsetof(iod.NrSectors), 4},
		{"ublksrv_io_desc.start_sector", unsafe.Offsetof(iod.StartSector), 8},
		{"ublksrv_io_desc.addr", unsafe.Offsetof(iod.Addr), 16},
		{"sizeofIODesc", sizeofIODesc, 24},

		{"sizeof(ublksrv_io_cmd)", unsafe.Sizeof(ioc), 16},
		{"ublksrv_io_cmd.q_id", unsafe.Offsetof(ioc.QID), 0},
		{"ublksrv_io_cmd.tag", unsafe.Offsetof(ioc.Tag), 2},
		{"ublksrv_io_cmd.result", unsafe.Offsetof(ioc.Result), 4},
		{"ublksrv_io_cmd.addr", unsafe.Offsetof(ioc.Addr), 8},

		{"sizeof(ublk_param_basic)", unsafe.Sizeof(pb), 32},
		{"ublk_param_basic.attrs", unsafe.Offsetof(pb.Attrs), 0},
		{"ublk_param_basic.logical_bs_shift", unsafe.Offsetof(pb.LogicalBSShift), 4},
		{"ublk_param_basic.physical_bs_shift", unsafe.Offsetof(pb.PhysicalBSShift), 5},
		{"ublk_param_basic.io_opt_shift", unsafe.Offsetof(pb.IOOptShift), 6},
		{"ublk_param_basic.io_min_shift", unsafe.Offsetof(pb.IOMinShift), 7},
		{"ublk_param_basic.max_sectors", unsafe.Offsetof(pb.MaxSectors), 8},
		{"ublk_param_basic.chunk_sectors", unsafe.Offsetof(pb.ChunkSectors), 12},
		{"ublk_param_basic.dev_sectors", unsafe.Offsetof(pb.DevSectors), 16},
		{"ublk_param_basic.virt_boundary_mask", unsafe.Offsetof(pb.VirtBoundaryMask), 24},

		{"sizeof(ublk_param_discard)", unsafe.Sizeof(pd), 20},
		{"ublk_param_discard.discard_alignment", unsafe.Offsetof(pd.DiscardAlignment), 0},
		{"ublk_param_discard.discard_granularity", unsafe.Offsetof(pd.DiscardGranularity), 4},
		{"ublk_param_discard.max_discard_sectors", unsafe.Offsetof(pd.MaxDiscardSectors), 8},
		{"ublk_param_discard.max_write_zeroes_sectors", unsafe.Offsetof(pd.MaxWriteZeroesSectors), 12},
		{"ublk_param_discard.max_discard_segments", unsafe.Offsetof(pd.MaxDiscardSegments), 16},
		{"ublk_param_discard.reserved0", unsafe.Offsetof(pd.Reserved0), 18},

		{"sizeof(ublk_param_devt)", unsafe.Sizeof(pdt), 16},
		{"ublk_param_devt.char_major", unsafe.Offsetof(pdt.CharMajor), 0},
		{"ublk_param_devt.char_minor", unsafe.Offsetof(pdt.CharMinor), 4},
		{"ublk_param_devt.disk_major", unsafe.Offsetof(pdt.DiskMajor), 8},
		{"ublk_param_devt.disk_minor", unsafe.Offsetof(pdt.DiskMinor), 12},

		{"sizeof(ublk_param_zoned)", unsafe.Sizeof(pz), 32},
		{"ublk_param_zoned.max_open_zones", unsafe.Offsetof(pz.MaxOpenZones), 0},
		{"ublk_param_zoned.max_active_zones", unsafe.Offsetof(pz.MaxActiveZones), 4},
		{"ublk_param_zoned.max_zone_append_sectors", unsafe.Offsetof(pz.MaxZoneAppendSectors), 8},
		{"ublk_param_zoned.reserved", unsafe.Offsetof(pz.Reserved), 12},

		{"sizeof(ublk_params)", unsafe.Sizeof(pp), 112},
		{"ublk_params.len", unsafe.Offsetof(pp.Len), 0},
		{"ublk_params.types", unsafe.Offsetof(pp.Types), 4},
		{"ublk_params.basic", unsafe.Offsetof(pp.Basic), 8},
		{"ublk_params.discard", unsafe.Offsetof(pp.Discard), 40},
		{"ublk_params.devt", unsafe.Offsetof(pp.Devt), 60},
		{"ublk_params.zoned", unsafe.Offsetof(pp.Zoned), 76},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}

// TestOpcodes checks the ioctl-encoded opcodes against the values of the
// UBLK_U_* macros of the 6.12 header.
func TestOpcodes(t *testing.T) {
	tests := []struct {
		name      string
		got, want uint32
	}{
		{"UBLK_U_CMD_GET_DEV_INFO", uCmdGetDevInfo, 0x80207502},
		{"UBLK_U_CMD_ADD_DEV", uCmdAddDev, 0xc0207504},
		{"UBLK_U_CMD_DEL_DEV", uCmdDelDev, 0xc0207505},
		{"UBLK_U_CMD_START_DEV", uCmdStartDev, 0xc0207506},
		{"UBLK_U_CMD_STOP_DEV", uCmdStopDev, 0xc0207507},
		{"UBLK_U_CMD_SET_PARAMS", uCmdSetParams, 0xc0207508},
		{"UBLK_U_CMD_GET_PARAMS", uCmdGetParams, 0x80207509},
		{"UBLK_U_CMD_START_USER_RECOVERY", uCmdStartUserRecovery, 0xc0207510},
		{"UBLK_U_CMD_END_USER_RECOVERY", uCmdEndUserRecovery, 0xc0207511},
		{"UBLK_U_CMD_GET_FEATURES", uCmdGetFeatures, 0x80207513},
		{"UBLK_U_CMD_DEL_DEV_ASYNC", uCmdDelDevAsync, 0x80207514},
		{"UBLK_U_IO_FETCH_REQ", uIOFetchReq, 0xc0107520},
		{"UBLK_U_IO_COMMIT_AND_FETCH_REQ", uIOCommitAndFetchReq, 0xc0107521},
		{"IORING_OP_NOP", OpNop, 0},
		{"IORING_OP_POLL_ADD", OpPollAdd, 6},
		{"IORING_OP_READ", OpRead, 22},
		{"IORING_OP_WRITE", OpWrite, 23},
		{"IORING_OP_URING_CMD", OpUringCmd, 46},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}

func TestDescArrayOffset(t *testing.T) {
	// round_up(4096 * 24, 4096) = 98304 per queue, whatever the depth.
	for qid, want := range []int64{0, 98304, 196608} {
		if got := descArrayOffset(qid); got != want {
			t.Errorf("descArrayOffset(%d) = %d, want %d", qid, got, want)
		}
	}
}
