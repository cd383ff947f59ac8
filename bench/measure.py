"""Wall seconds and peak RSS (KiB) of one command, printed as "SECONDS KIB".

Usage: python3 bench/measure.py [--ok 0,1] COMMAND [ARG...]
--ok: the exit statuses the command may end with (others fail the benchmark, naming the
command); without it any status is taken. The bench scripts share this one measurement.
"""
import resource
import subprocess
import sys
import time

args = sys.argv[1:]
ok = None
if args[:1] == ["--ok"]:
    ok = {int(s) for s in args[1].split(",")}
    args = args[2:]
start = time.monotonic()
status = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
if ok is not None and status not in ok:
    sys.exit(f"measure: {' '.join(args)} exited {status}, expected {sorted(ok)}")
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"{time.monotonic() - start:.4f} {peak}")
