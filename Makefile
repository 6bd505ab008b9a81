# Blockhash. `make run` demonstrates the product, `make test` runs every test
# (the VM suite on the real ublk driver included), `make unit` is the fast loop.
GO      ?= go
BIN     := bin
CACHE   := .cache
RUNDIR  := $(CACHE)/run
VM_DISKS ?=
export PATH := $(PATH):/usr/local/go/bin

.PHONY: all build unit test vmtest soak bench fuzz run demo clean vet

all: build

build:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./cmd/...

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

test: unit vmtest

# The fault campaigns at length: each scenario in SOAK_SCENARIOS runs
# SOAK_CYCLES cycles (guest variable BHVM_CYCLES; make test runs their
# defaults), each with SOAK_TIMEOUT seconds.
SOAK_SCENARIOS ?= daemon_kill_campaign
SOAK_CYCLES    ?= 100
SOAK_TIMEOUT   ?= 3600
soak:
	VM_DISKS="$(VM_DISKS)" tests/vm/run --env BHVM_CYCLES=$(SOAK_CYCLES) --scenario-timeout $(SOAK_TIMEOUT) \
		$(foreach s,$(SOAK_SCENARIOS),--scenario $(s))

# Speed and memory figures (reported, never asserted).
bench: build
	$(GO) test -run '^$$' -bench Ingest -benchtime 3x ./engine/
	$(GO) test -run '^$$' -bench . -skip Ingest ./engine/ ./index/ ./ublk/
	$(BIN)/blockhash bench

# Fuzz every decoder for a short while each.
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeMeta -fuzztime 20s ./blockstore/
	$(GO) test -run '^$$' -fuzz FuzzDecodeKey -fuzztime 20s ./index/
	$(GO) test -run '^$$' -fuzz FuzzDecodeSuperblock -fuzztime 20s ./engine/
	$(GO) test -run '^$$' -fuzz FuzzDecodeMapHeader -fuzztime 20s ./engine/
	$(GO) test -run '^$$' -fuzz FuzzDecodeMapEntry -fuzztime 20s ./engine/
	$(GO) test -run '^$$' -fuzz FuzzDecodeRecord -fuzztime 20s ./engine/
	$(GO) test -run '^$$' -fuzz FuzzDecodeState -fuzztime 20s ./daemon/
	$(GO) test -run '^$$' -fuzz FuzzHandle -fuzztime 20s ./daemon/
	$(GO) test -run '^$$' -fuzz FuzzIODesc -fuzztime 20s ./ublk/

# The daemon with one device on .cache/run/store (inside the test VM where
# this host has no ublk driver).
run: build
	tools/run-demo.sh

# The store alone, no kernel device: sample images imported, analyzed, stats.
demo: build
	$(BIN)/blockhash --store $(RUNDIR)/demo-store demo

clean:
	rm -rf $(BIN) $(RUNDIR) tests/vm/out
