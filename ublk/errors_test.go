package ublk

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCmdErrorIs(t *testing.T) {
	tests := []struct {
		errno  unix.Errno
		target error
	}{
		{unix.EPERM, ErrPermission},
		{unix.ENODEV, ErrNoDevice},
		{unix.EEXIST, ErrExists},
		{unix.EBUSY, ErrBusy},
	}
	for _, tc := range tests {
		err := fmt.Errorf("wrapped: %w", &CmdError{Cmd: "ADD_DEV", DevID: 3, Errno: tc.errno})
		if !errors.Is(err, tc.target) {
			t.Errorf("%v is not %v", err, tc.target)
		}
		if !errors.Is(err, tc.errno) {
			t.Errorf("%v does not unwrap to %v", err, tc.errno)
		}
	}
	if errors.Is(&CmdError{Cmd: "X", Errno: unix.EINVAL}, ErrPermission) {
		t.Error("EINVAL matched ErrPermission")
	}
}

// TestOpenControlMissing runs where ublk_drv is not loaded (the host).
func TestOpenControlMissing(t *testing.T) {
	if _, err := os.Stat(ControlPath); err == nil {
		t.Skip(ControlPath + " exists")
	}
	_, err := OpenControl()
	if !errors.Is(err, ErrNotLoaded) {
		t.Fatalf("OpenControl = %v, want ErrNotLoaded", err)
	}
	if !strings.Contains(err.Error(), "the ublk_drv kernel module is not loaded: modprobe ublk_drv") {
		t.Fatalf("message %q lacks the modprobe hint", err)
	}
}

func TestCheckFeatures(t *testing.T) {
	// A 6.0-like kernel without recovery.
	have := FeatureURingCmdCompInTask | FeatureNeedGetData
	err := checkFeatures(have, Config{}.flags())
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("err = %v, want ErrUnsupported", err)
	}
	for _, name := range []string{"UBLK_F_USER_RECOVERY", "UBLK_F_CMD_IOCTL_ENCODE"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("%q does not name %s", err, name)
		}
	}
	if err := checkFeatures(0x1FE, Config{}.flags()); err != nil {
		t.Fatalf("6.12 feature set rejected: %v", err)
	}
}
