"""trainer.host_memory=heap: freed host memory is reused, so a step that frees and allocates the
same large blocks stops page-faulting (mtl_bench/train/host_memory.py)."""
from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap

import pytest

from mtl_bench.train import host_memory

# a small conv net's training steps (4 MiB activations freed and allocated again each step): the
# minor page faults of 30 steps after 5 warm-up steps
PROGRAM = textwrap.dedent("""
    import resource, sys, torch
    from mtl_bench.train import host_memory
    torch.set_num_threads(1)
    if sys.argv[1] != "none":
        host_memory.apply(sys.argv[1])
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, padding=1))
    x = torch.randn(16, 3, 64, 64)
    def step():
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
    for _ in range(5):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(30):
        step()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def faults(choice: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROGRAM, choice], capture_output=True, text=True, timeout=120, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc thresholds")
def test_heap_keeps_freed_blocks_and_system_leaves_malloc_alone():
    if not hasattr(ctypes.CDLL(None), "mallopt"):  # asked without calling it: this process keeps its malloc
        pytest.skip("no glibc mallopt here")
    activation_pages = 16 * 16 * 64 * 64 * 4 // 4096  # one 4 MiB activation
    heap, system, untouched = faults("heap"), faults("system"), faults("none")
    # system: fresh pages every step (1,400-3,500 faults a step here); heap: a few new blocks in all
    # (0-3 activations' worth seen), however many steps
    assert system > 15 * activation_pages and untouched > 15 * activation_pages
    assert heap < 8 * activation_pages and 4 * heap < system


def test_a_bad_choice_names_the_key():
    with pytest.raises(ValueError, match="trainer.host_memory='fast': choose heap or system"):
        host_memory.apply("fast")
