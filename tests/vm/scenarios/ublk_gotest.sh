#!/bin/bash
# bhvm-timeout: 180
# The ublk package's own Go tests against the real driver (TestReal*):
# features, round trip, discard/write-zeroes/FUA reaching the backend,
# out-of-order completion beside a slow request, concurrent verify, stop,
# duplicate id, abandon and recover. They skip on hosts without ublk; here
# a skip is a failure.
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
n=$(echo "$out" | grep -c -- '--- PASS: TestReal')
metric real_tests_passed "$n"
[ "$n" -ge 8 ] || fail "only $n TestReal tests passed, want 8"
pass
