"""What every benchmark case shares: the options, the machine, the processes started, and
the failures and skipped cases so far."""

import os
import resource
import sys
from typing import Dict, List, Optional

from islet_bench import host, quiet
from islet_bench.proc import Proc
from islet_bench.servers import Processes


class Context:
    def __init__(self, options, tmp: str, bins: Dict[str, str], repo: str, here: str):
        self.options = options
        self.smoke: bool = options.smoke
        self.tmp = tmp
        self.bins = bins  # binary name -> path (copies in tmp)
        self.repo = repo  # the source tree: docs/, tools/make_test_cert.sh
        self.here = here  # tools/bench: pipeline.lua
        self.proc = Proc()
        self.hz = os.sysconf("SC_CLK_TCK")
        self.cores = host.cores()
        self.server_cpu, self.load_cpu = host.pinning()
        self.failures: List[str] = []
        self.skipped: List[str] = []
        self.processes = Processes(self.proc, tmp, self.load_cpu, self.fail)
        self.waiter = quiet.QuietWaiter(options.quiet_wait,
                                        lambda: quiet.sample_busy_percent(self.proc), self.log)
        self.tools: Dict[str, Optional[str]] = {t: host.find_tool(t) for t in ("wrk", "nginx", "h2load", "haproxy")}
        self.nofile = raise_descriptor_limit()

    def log(self, message: str) -> None:
        print(f"bench: {message}", file=sys.stderr, flush=True)

    def fail(self, message: str) -> None:
        self.log(f"FAIL: {message}")
        self.failures.append(message)

    def wants(self, part: str) -> bool:
        return part in self.options.only.split(",")


def raise_descriptor_limit(cap: int = 65536) -> int:
    """Raises this process's descriptor limit (and so its children's) to the hard one:
    10,000 idle connections need as many descriptors in the server. Returns it, at most
    `cap` (what nginx is configured for)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    except (ValueError, OSError):
        pass
    return cap if soft == resource.RLIM_INFINITY else min(soft, cap)
