#!/bin/bash
# bhvm-timeout: 180
# The ublk package's own Go tests against the real driver (TestReal*):
# features, round trip, discard/write-zeroes/FUA reaching the backend,
# out-of-order completion beside a slow request, concurrent verify, stop,
# stop while open, duplicate id, abandon and recover. They skip on hosts
# without ublk; here a skip is a failure, and so is a TestReal test that
# did not pass.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh

require ublk.test
out=$(ublk.test -test.run '^TestReal' -test.v -test.count=1 -test.timeout 150s 2>&1)
rc=$?
echo "$out"
[ "$rc" -eq 0 ] || fail "ublk.test -test.run TestReal exited with $rc"
if echo "$out" | grep -q -- '--- SKIP'; then
	fail "real-driver tests skipped inside the VM"
fi
# every top-level TestReal test the binary has must have passed
want=$(ublk.test -test.list '^TestReal' | grep -c '^TestReal')
n=$(echo "$out" | grep -c -- '^--- PASS: TestReal')
metric real_tests_passed "$n"
[ "$want" -ge 9 ] || fail "ublk.test lists only $want TestReal tests"
[ "$n" -eq "$want" ] || fail "$n of $want TestReal tests passed"
pass
