package ublk

import (
	"errors"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{ID: -1, Size: 1 << 30}
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"defaults", func(c *Config) {}, true},
		{"lbs 4096", func(c *Config) { c.LogicalBlockSize = 4096 }, true},
		{"lbs 1024", func(c *Config) { c.LogicalBlockSize = 1024 }, false},
		{"depth 4096", func(c *Config) { c.Depth = 4096 }, true},
		{"depth 4097", func(c *Config) { c.Depth = 4097 }, false},
		{"queues 0 means default", func(c *Config) { c.Queues = 0 }, true},
		{"queues -1", func(c *Config) { c.Queues = -1 }, false},
		{"size 0", func(c *Config) { c.Size = 0 }, false},
		{"size not block multiple", func(c *Config) { c.LogicalBlockSize = 4096; c.Size = 4096*10 + 512 }, false},
		{"max io 32 MiB", func(c *Config) { c.MaxIOBytes = 32 << 20 }, true},
		{"max io 64 MiB", func(c *Config) { c.MaxIOBytes = 64 << 20 }, false},
		{"max io unaligned", func(c *Config) { c.MaxIOBytes = 6000 }, false},
		{"physical < logical", func(c *Config) { c.LogicalBlockSize = 4096; c.PhysicalBlockSize = 512 }, false},
		{"io_opt not pow2", func(c *Config) { c.IOOpt = 3000 }, false},
		{"id -2", func(c *Config) { c.ID = -2 }, false},
		{"no discard ignores granularity", func(c *Config) { c.NoDiscard = true; c.DiscardGranularity = 3 }, true},
		{"bad granularity", func(c *Config) { c.DiscardGranularity = 3 }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			err := c.withDefaults().validate()
			if (err == nil) != tc.ok {
				t.Fatalf("validate = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

func TestKernelParams(t *testing.T) {
	c := Config{Size: 1 << 30, LogicalBlockSize: 4096, MaxIOBytes: 1 << 20}.withDefaults()
	p := c.kernelParams()
	if p.Types != paramTypeBasic|paramTypeDiscard {
		t.Fatalf("types = %#x", p.Types)
	}
	b := p.Basic
	if b.Attrs&AttrVolatileCache == 0 || b.Attrs&AttrFUA == 0 {
		t.Fatalf("attrs %#x lack VOLATILE_CACHE|FUA: flush/FUA would never reach the backend", b.Attrs)
	}
	if b.LogicalBSShift != 12 || b.PhysicalBSShift != 12 || b.IOMinShift != 12 || b.IOOptShift != 12 {
		t.Fatalf("shifts %+v", b)
	}
	if b.MaxSectors != (1<<20)>>9 || b.DevSectors != (1<<30)>>9 {
		t.Fatalf("max_sectors %d dev_sectors %d (sectors are 512 bytes)", b.MaxSectors, b.DevSectors)
	}
	d := p.Discard
	if d.DiscardGranularity != 4096 || d.MaxDiscardSegments != 1 || d.MaxDiscardSectors == 0 || d.MaxWriteZeroesSectors == 0 {
		t.Fatalf("discard %+v", d)
	}
	// Kernel rule: max_sectors <= max_io_buf_bytes >> 9.
	if b.MaxSectors > uint32(c.MaxIOBytes>>9) {
		t.Fatal("max_sectors exceeds the io buffer")
	}
	if c.NoDiscard = true; c.kernelParams().Types != paramTypeBasic {
		t.Fatal("NoDiscard still sends discard params")
	}
}

func TestConfigFlags(t *testing.T) {
	f := Config{}.flags()
	if f&FeatureUserRecovery == 0 || f&FeatureUserRecoveryReissue == 0 || f&FeatureCmdIoctlEncode == 0 {
		t.Fatalf("flags %s", FeatureString(f))
	}
	if f := (Config{NoRecovery: true}).flags(); f&(FeatureUserRecovery|FeatureUserRecoveryReissue) != 0 {
		t.Fatalf("NoRecovery flags %s", FeatureString(f))
	}
}

func TestFeatureNames(t *testing.T) {
	got := FeatureString(0x1FE)
	for _, want := range []string{"UBLK_F_URING_CMD_COMP_IN_TASK", "UBLK_F_USER_RECOVERY", "UBLK_F_ZONED", "UBLK_F_CMD_IOCTL_ENCODE"} {
		if !strings.Contains(got, want) {
			t.Errorf("FeatureString(0x1FE) = %q lacks %s", got, want)
		}
	}
	if strings.Contains(got, "ZERO_COPY") {
		t.Errorf("FeatureString(0x1FE) = %q names bit 0", got)
	}
	if got := FeatureString(1 << 40); !strings.Contains(got, "BIT_40") {
		t.Errorf("unknown bit named %q", got)
	}
}
