#!/bin/bash
# bhvm-timeout: 180
# The daemon package's Go tests against the real driver (TestReal*): a
# paused device's writes wait until resume; a write held when the paused
# device is released fails instead of hanging; a daemon stopped while a
# device is paused does not hang and the next one does the held write;
# invalidate drops the kernel's stale cached pages. They skip on hosts
# without ublk; here a skip is a failure, and so is a TestReal test that
# did not pass.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh

require daemon.test
out=$(daemon.test -test.run '^TestReal' -test.v -test.count=1 -test.timeout 150s 2>&1)
rc=$?
echo "$out" | grep -v '^{' # the daemon's own log lines are JSON
[ "$rc" -eq 0 ] || fail "daemon.test -test.run TestReal exited with $rc"
if echo "$out" | grep -q -- '--- SKIP'; then
	fail "real-driver tests skipped inside the VM"
fi
want=$(daemon.test -test.list '^TestReal' | grep -c '^TestReal')
n=$(echo "$out" | grep -c -- '^--- PASS: TestReal')
metric real_tests_passed "$n"
[ "$want" -ge 3 ] || fail "daemon.test lists only $want TestReal tests"
[ "$n" -eq "$want" ] || fail "$n of $want TestReal tests passed"
pass
