# Blockhash. `make run` demonstrates the product, `make test` runs every test
# (the VM suite on the real ublk driver included), `make unit` is the fast loop.
GO      ?= go
BIN     := bin
CACHE   := .cache
RUNDIR  := $(CACHE)/run
VM_DISKS ?=
export PATH := $(PATH):/usr/local/go/bin

.PHONY: all build build-rados unit test vmtest hosts soak bench bench-replica fuzz fuzz-long run demo clean vet rados rados-bench rados-hosts rados-vm

all: build

# The version blockhash --version prints: git describe when git knows the
# tree, else the Go build info (see cmd/blockhash/version.go).
VERSION ?= $(shell git describe --always --dirty 2>/dev/null)
LDFLAGS := $(if $(VERSION),-X main.version=$(VERSION))

build:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

# blockhash with RADOS support (init/serve --rados: a store shared by
# hosts in a Ceph pool): cgo against librados (tests/ceph/install has the
# packages), so not static.
build-rados:
	tests/ceph/install
	$(GO) build -tags rados -ldflags "$(LDFLAGS)" -o $(BIN)/blockhash ./cmd/blockhash

vet:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Fast: every Go test on the host (the ublk tests that need the kernel
# driver skip here and run in the VM suite).
unit: vet
	$(GO) test -count=1 ./...

# The real-kernel suite: boots a Debian 6.12 kernel with ublk_drv under QEMU.
vmtest:
	VM_DISKS="$(VM_DISKS)" tests/vm/run --all

# Two hosts on one machine (network namespaces, root): replication, its
# fault campaign and hostile streams (under 3 minutes). Says SKIP where
# namespaces cannot be made.
hosts:
	tests/hosts/run

test: unit hosts vmtest rados rados-hosts rados-vm

# The shared RADOS store (package rados, build tag rados, cgo against
# librados): installs the Ceph packages if missing (root, apt-get), starts a
# throw-away one-node cluster (memstore, loopback), runs the tests, stops
# the cluster whatever the result: package rados, then package pool (the
# devices of a shared store).
# The test binary runs under glibc's malloc checker where it is installed
# (a double free in librados once aborted only that way, nondeterministically).
RADOS_TESTFLAGS ?= -test.count=1
MALLOC_DEBUG := $(wildcard /usr/lib/x86_64-linux-gnu/libc_malloc_debug.so.0)
rados:
	tests/ceph/install
	$(GO) vet -tags rados ./rados/...
	mkdir -p $(CACHE)
	$(GO) build -tags rados -o $(CACHE)/bhrados ./rados/cmd/bhrados
	$(GO) vet -tags rados ./pool/ ./daemon/ ./cmd/... ./tools/...
	$(GO) build -tags rados -o $(CACHE)/blockhash-rados ./cmd/blockhash
	$(GO) test -tags rados -c -o $(CACHE)/rados.test ./rados/
	$(GO) test -tags rados -c -o $(CACHE)/pool.test ./pool/
	tests/ceph/cluster start || { tests/ceph/cluster stop; exit 1; }; \
	eval "$$(tests/ceph/cluster env)" && (cd rados && \
		$(if $(MALLOC_DEBUG),LD_PRELOAD=$(MALLOC_DEBUG) MALLOC_CHECK_=3) ../$(CACHE)/rados.test $(RADOS_TESTFLAGS)) && \
		(cd pool && $(if $(MALLOC_DEBUG),LD_PRELOAD=$(MALLOC_DEBUG) MALLOC_CHECK_=3) ../$(CACHE)/pool.test $(RADOS_TESTFLAGS)); \
		rc=$$?; tests/ceph/cluster stop; exit $$rc

# Hosts as network namespaces reaching a one-node cluster (root): a lease
# holder cut off is fenced by the other host, and none of its later writes
# lands (tests/ceph/partition, about 16 s); three hosts with their own
# daemons share a store: overlapping imports at once stored once, hosts
# killed and cut off, GC with no pause under I/O (tests/ceph/hosts, 2 to
# 2.5 min).
rados-hosts:
	tests/ceph/install
	tests/ceph/partition
	tests/ceph/hosts

# Real /dev/ublkbN devices in the test VM served from a store in a Ceph
# pool (root, 4 to 5 minutes here): a one-node cluster in a network namespace
# of its own, which the VM reaches on a tap device (tests/ceph/vm, guest
# scenario rados_devices: fio verify, a daemon restart read back bit for
# bit, ext4, fsck and scrub through the daemon, this host's list of the
# pool while the guest serves; fio figures against a local store).
rados-vm:
	tests/ceph/install
	tests/ceph/vm

# The RADOS primitives' figures on the one-node cluster (reported, never
# asserted): pack writes MB/s, index inserts keys/s, lease hand-over, fence.
rados-bench:
	tests/ceph/install
	tests/ceph/cluster start || { tests/ceph/cluster stop; exit 1; }; \
	eval "$$(tests/ceph/cluster env)" && $(GO) test -tags rados -run '^$$' -bench . -benchtime 2s ./rados/; \
		rc=$$?; tests/ceph/cluster stop; exit $$rc

# The fault campaigns at length: each scenario in SOAK_SCENARIOS runs
# SOAK_CYCLES cycles (guest variable BHVM_CYCLES; make test runs their
# defaults), each with SOAK_TIMEOUT seconds.
SOAK_SCENARIOS ?= daemon_kill_campaign powercut
SOAK_CYCLES    ?= 100
SOAK_TIMEOUT   ?= 3600
# On the host: 50,000 simulated power cuts (make test: 1,500) and 100
# SIGKILLs of a writing process (make test: 25).
soak: fuzz-long
	BLOCKHASH_POWERCUT_CRASHES=50000 $(GO) test -count=1 -timeout 2h -run '^TestPowerCutProperty$$' ./engine/
	BLOCKHASH_CRASH_ITERATIONS=100 $(GO) test -count=1 -timeout 1h -run '^TestCrashRecovery$$' ./engine/
	VM_DISKS="$(VM_DISKS)" tests/vm/run --env BHVM_CYCLES=$(SOAK_CYCLES) --scenario-timeout $(SOAK_TIMEOUT) \
		$(foreach s,$(SOAK_SCENARIOS),--scenario $(s))

# Speed and memory figures (reported, never asserted). BENCH_FLAGS go to
# `blockhash bench`, e.g. "--device-time 20s" for longer device patterns.
# SnapshotCosts writes 100 GiB (BLOCKHASH_BENCH_GIB) from a pool of 2^20
# distinct blocks (BLOCKHASH_BENCH_POOL) through the engine, then measures
# snapshot, clone, copy-on-write, diff and delete (a few minutes on 2
# cores; about 6 GiB of disk under TMPDIR).
BENCH_FLAGS ?=
bench: build
	$(GO) test -run '^$$' -bench Ingest -benchtime 3x ./engine/
	$(GO) test -run '^$$' -bench . -skip 'Ingest|SnapshotCosts|DomainSideChannel' ./engine/ ./index/ ./ublk/
	# One 4 KiB write of a block the writer's dedup domain holds, one only
	# another domain holds, and a new one (the cross-VM side channel).
	$(GO) test -run '^$$' -bench DomainSideChannel -benchtime 20000x -count 3 ./engine/
	# What counting a request in the metrics costs (clock, atomics, histogram).
	$(GO) test -run '^$$' -bench DeviceMetrics ./daemon/
	$(GO) test -run '^$$' -bench SnapshotCosts -benchtime 1x -timeout 2h ./engine/
	# A migration's switch of a device with 10 GiB written, a guest writing
	# 1,000 random 4 KiB blocks a second (BLOCKHASH_MIGRATE_GIB, _IOPS).
	$(GO) test -run '^$$' -bench MigrateSwitch -benchtime 1x -timeout 2h ./daemon/
	$(BIN)/blockhash bench $(BENCH_FLAGS)
	tests/bench/replica.sh

# Replication figures between two namespace hosts (root; about 4 GiB under
# TMPDIR; a few minutes): sends of a 1 GiB ext4 image to a store holding a
# sibling, an incremental after 1% changed, throughput against dd and
# qemu-img. Figures are also left in .cache/bench-replica.txt.
bench-replica: build
	tests/bench/replica.sh

# Every decoder's fuzzer, as package:name. Each runs at thousands of
# executions per second or more (checksummed formats fuzz the bytes before
# the checksum, and small inputs).
FUZZERS := blockstore:FuzzDecodeMeta blockstore:FuzzDecodeManifest index:FuzzDecodeKey \
	engine:FuzzDecodeSuperblock engine:FuzzDecodeMapHeader engine:FuzzDecodeMapEntry engine:FuzzDecodeV1Header \
	engine:FuzzDecodeRecord engine:FuzzDecodePtrPage engine:FuzzReadVolumeHeader \
	daemon:FuzzDecodeState daemon:FuzzHandle ublk:FuzzIODesc \
	replica:FuzzDecodeFrames replica:FuzzDecodePayloads daemon:FuzzFrameReader \
	rados:FuzzDecodeRefs pool:FuzzDecodeEntry pool:FuzzDecodeHeaders
FUZZTIME ?= 5s
FUZZLONG ?= 2000000x
# Minimising a new interesting input stops a worker's fuzzing until done
# (up to 60 s by default): a few seconds of a record fuzzer went by at 0
# executions per second.
FUZZMIN ?= 1s

# Fuzz every decoder for a few seconds each.
fuzz:
	@for f in $(FUZZERS); do \
		echo "== $${f#*:} ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${f#*:}\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) ./$${f%%:*}/ || exit 1; \
	done

# Fuzz every decoder for millions of executions each (about 10 minutes on
# 2 cores).
fuzz-long:
	$(MAKE) fuzz FUZZTIME=$(FUZZLONG) FUZZMIN=10s

# The daemon with one device on .cache/run/store (inside the test VM where
# this host has no ublk driver).
run: build
	tools/run-demo.sh

# The store alone, no kernel device: sample images imported, analyzed, stats.
demo: build
	$(BIN)/blockhash --store $(RUNDIR)/demo-store demo

clean:
	rm -rf $(BIN) $(RUNDIR) tests/vm/out
