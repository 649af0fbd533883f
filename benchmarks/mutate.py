"""Mutation testing: break the code on purpose, one named bug at a time, and see
whether the tests notice.

Each mutation names a file, an exact snippet of it and the snippet's mutant,
and the test files that should catch it. The run copies the repository's
files (``git ls-files``, tracked and untracked-but-not-ignored) into a
temporary directory, runs every listed test file once on the unchanged copy
(a failing baseline would make every mutant look killed), then applies each
mutant in turn, runs its tests with ``pytest -x`` and puts the file back.
A mutant is *killed* when its tests fail (or time out), *survived* when they
pass. The checkout itself is never touched.

    .venv/bin/python benchmarks/mutate.py              # all, writes benchmarks/MUTATION.md
    .venv/bin/python benchmarks/mutate.py --list       # names, files and issue items
    .venv/bin/python benchmarks/mutate.py --only self-time-nothing-subtracted --only ...

The copy is imported through ``PYTHONPATH`` (checked before anything runs:
the virtual environment has the project installed in editable mode, and its
finder must not win). Bytecode is not written, so a mutant's ``.pyc`` can
never stand in for the original; a mutant of a file with numba kernels gets
a numba cache of its own, and every restored file gets its original mtime
back, so the shared numba cache stays valid.

Not part of the test suite (``.ci/run`` does not run it): 6 to 13 minutes
on two cores, by how busy they are.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REPORT = REPO / "benchmarks" / "MUTATION.md"
TIMEOUT_S = 300


@dataclass(frozen=True)
class Mutation:
    """One deliberate bug: ``original`` (exactly once in ``path``) becomes ``mutant``."""

    name: str
    path: str
    original: str
    mutant: str
    tests: tuple[str, ...]
    issue: str = ""  # the issue 23 item it reproduces, if any
    before: str = ""  # issue 23 items: what the suite did with it before the item's tests
    why: str = ""  # for a mutant expected to survive: why that is acceptable


# Test files, grouped by what they test.
HOOKS = ("tests/reimpl/nn/modules/test_module_hooks.py",)
STATE = ("tests/reimpl/nn/modules/test_module_state_dict.py",)
MODULE = ("tests/reimpl/nn/modules/test_module.py",)
BN = ("tests/reimpl/nn/modules/test_batchnorm.py",)
SGD = ("tests/reimpl/optim/test_sgd.py",)
DP = ("tests/reimpl/nn/parallel",)
SCATTER = ("tests/reimpl/nn/parallel/test_scatter_chunks.py",)
SAMPLER = (
    "tests/reimpl/utils/data/test_sampler.py",
    "tests/reimpl/utils/data/test_sampler_global_rng.py",
)
AGGREGATE = (
    "tests/tracer/analyze/test_aggregate.py",
    "tests/tracer/analyze/test_self_time_threads.py",
    "tests/tracer/graphs/test_calls.py",
)
SUMMARY = ("tests/tracer/analyze/test_summary.py",)
CHROME = ("tests/tracer/export/test_chrome.py",)

MODULE_PY = "reimpl/nn/modules/module.py"
BN_PY = "reimpl/nn/modules/batchnorm.py"
AGGREGATE_PY = "tracer/analyze/aggregate.py"
SUMMARY_PY = "tracer/analyze/summary.py"
SAMPLER_PY = "reimpl/utils/data/sampler.py"

_KW_HOOK = """                        hook_result = (
                            hook(self, args, kwargs, result)
                            if path is None
                            else _run_hook(path, "hook.forward", hook, self, args, kwargs, result)
                        )"""
_PARAMS_THEN_BUFFERS = """        for name, param in self._parameters.items():
            if param is not None:
                destination[prefix + name] = param if keep_vars else param.detach()
        for name, buf in self._buffers.items():
            if buf is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = buf if keep_vars else buf.detach()
"""
_BUFFERS_THEN_PARAMS = """        for name, buf in self._buffers.items():
            if buf is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = buf if keep_vars else buf.detach()
        for name, param in self._parameters.items():
            if param is not None:
                destination[prefix + name] = param if keep_vars else param.detach()
"""

MUTATIONS: list[Mutation] = [
    # -- the deliberate bugs issue 23 names ------------------------------------------
    Mutation(
        "forward-hook-kwargs-empty",
        MODULE_PY,
        _KW_HOOK,
        _KW_HOOK.replace("args, kwargs, result", "args, {}, result"),
        HOOKS,
        issue="with_kwargs forward hook gets {}",
        before="survived all of tests/reimpl/nn/modules/",
    ),
    Mutation(
        "self-time-minus-children-self",
        AGGREGATE_PY,
        "out[p] -= dur[row]",
        "out[p] -= out[row]",
        AGGREGATE,
        issue="self time: children's self time subtracted",
        before="survived tests/tracer/graphs/, tests/tracer/export/, test_recorder.py (the TUI's "
        "SVG snapshots caught it)",
    ),
    Mutation(
        "self-time-nothing-subtracted",
        AGGREGATE_PY,
        "out[p] -= dur[row]",
        "out[p] -= 0",
        AGGREGATE,
        issue="self time: nothing subtracted",
        before="survived tests/tracer/graphs/, tests/tracer/export/, test_recorder.py (the TUI's "
        "SVG snapshots caught it)",
    ),
    Mutation(
        "covered-self-time-nothing-subtracted",
        AGGREGATE_PY,
        "out[p] -= covered",
        "out[p] -= 0",
        AGGREGATE,
        issue="self time: nothing subtracted",
        before="Trace.self_ns's kernel since d8e049c, after the issue was filed",
    ),
    Mutation(
        "state-dict-buffers-first",
        MODULE_PY,
        _PARAMS_THEN_BUFFERS,
        _BUFFERS_THEN_PARAMS,
        STATE,
        issue="state_dict buffers before parameters",
        before="survived test_module_state_dict.py and test_module.py (test_batchnorm.py caught "
        "it)",
    ),
    Mutation(
        "metadata-version-always-1",
        MODULE_PY,
        "local_metadata = dict(version=self._version)",
        "local_metadata = dict(version=1)",
        STATE,
        issue="_metadata versions all 1",
        before="already killed by "
        "test_module_state_dict.py::test_version_migration_and_extra_state",
    ),
    Mutation(
        "global-old-backward-hook-leaves-flag",
        MODULE_PY,
        "    _global_is_full_backward_hook = False\n",
        "    _global_is_full_backward_hook = None\n",
        HOOKS,
        issue="global backward hook kinds (order-dependent test)",
        before="survived test_module_hooks.py in file order (both sides raised from a leftover "
        "flag)",
    ),
    Mutation(
        "global-full-backward-hook-leaves-flag",
        MODULE_PY,
        "    _global_is_full_backward_hook = True\n",
        "    _global_is_full_backward_hook = None\n",
        HOOKS,
        issue="global backward hook kinds (order-dependent test)",
        before="killed by test_module_hooks.py::test_global_forward_and_backward_hooks",
    ),
    Mutation(
        "scatter-tensor-split",
        "reimpl/nn/parallel/comm.py",
        "chunks = tensor.chunk(len(devices), dim)",
        "chunks = tensor.tensor_split(len(devices), dim)",
        SCATTER,
        issue="DataParallel scatter with tensor_split",
        before="survived test_data_parallel.py and test_scatter_gather.py (test_comm.py caught it)",
    ),
    Mutation(
        "chrome-ts-in-ns",
        "tracer/export/chrome.py",
        '"ts": (int(trace.start_ns[row]) - t0) / 1000.0,',
        '"ts": float(int(trace.start_ns[row]) - t0),',
        CHROME,
        issue="Chrome export in nanoseconds",
        before="survived test_chrome.py; killed by test_chrome_flows.py",
    ),
    Mutation(
        "chrome-dur-in-ns",
        "tracer/export/chrome.py",
        'ev["dur"] = dur / 1000.0',
        'ev["dur"] = float(dur)',
        CHROME,
        issue="Chrome export in nanoseconds",
        before="killed by test_chrome.py::test_chrome_export_validates (its nesting check)",
    ),
    Mutation(
        "span-swallows-exception",
        "reimpl/_trace.py",
        "                self.func,\n                self.attrs,\n            )\n        )\n",
        "                self.func,\n                self.attrs,\n            )\n        )\n"
        "        return True  # type: ignore[return-value]\n",
        ("tests/tracer/test_record_exceptions.py",),
        issue="weak test: exception inside a span",
        before="killed by the old test through the process status",
    ),
    Mutation(
        "record-swallows-exception",
        "tracer/__init__.py",
        "    with rec:\n        yield rec\n",
        "    try:\n        with rec:\n            yield rec\n    except Exception:\n        pass\n",
        ("tests/tracer/test_record_exceptions.py",),
        issue="weak test: exception inside a span",
        before="survived test_recorder.py (its test caught the exception itself)",
    ),
    Mutation(
        "random-sampler-extra-global-draw",
        SAMPLER_PY,
        "            generator.manual_seed(seed)\n",
        "            generator.manual_seed(seed)\n            torch.rand(1)\n",
        SAMPLER,
        issue="weak test: unseeded RandomSampler",
        before="killed by test_sampler.py::test_random_sampler_stream",
    ),
    Mutation(
        "random-sampler-own-generator-draws-global-rng",
        SAMPLER_PY,
        "        if self.generator is None:\n"
        "            seed = int(torch.empty((), dtype=torch.int64).random_().item())\n",
        "        seed = int(torch.empty((), dtype=torch.int64).random_().item())\n"
        "        if self.generator is None:\n",
        SAMPLER,
        issue="weak test: unseeded RandomSampler",
        before="survived test_sampler.py",
    ),
    Mutation(
        "random-sampler-fixed-seed",
        SAMPLER_PY,
        "            generator.manual_seed(seed)\n",
        "            generator.manual_seed(0)\n",
        SAMPLER,
        issue="weak test: unseeded RandomSampler",
        before="killed by test_sampler.py::test_random_sampler_stream",
    ),
    # -- nn.Module: hooks --------------------------------------------------------------
    Mutation(
        "always-call-kwargs-empty",
        MODULE_PY,
        "                        if hook_id in self._forward_hooks_with_kwargs:\n"
        "                            hook_result = (\n"
        "                                hook(self, args, kwargs, result)",
        "                        if hook_id in self._forward_hooks_with_kwargs:\n"
        "                            hook_result = (\n"
        "                                hook(self, args, {}, result)",
        HOOKS,
    ),
    Mutation(
        "forward-hook-prepend-ignored",
        MODULE_PY,
        "self._forward_hooks.move_to_end(handle.id, last=False)",
        "self._forward_hooks.move_to_end(handle.id, last=True)",
        HOOKS,
    ),
    Mutation(
        "forward-pre-hook-prepend-ignored",
        MODULE_PY,
        "self._forward_pre_hooks.move_to_end(handle.id, last=False)",
        "self._forward_pre_hooks.move_to_end(handle.id, last=True)",
        HOOKS,
    ),
    Mutation(
        "global-pre-hooks-after-local",
        MODULE_PY,
        "                    *_global_forward_pre_hooks.items(),\n"
        "                    *self._forward_pre_hooks.items(),",
        "                    *self._forward_pre_hooks.items(),\n"
        "                    *_global_forward_pre_hooks.items(),",
        HOOKS,
    ),
    Mutation(
        "pre-hook-single-value-not-wrapped",
        MODULE_PY,
        "args_result = (args_result,)",
        "args_result = args_result",
        HOOKS,
    ),
    Mutation(
        "forward-hook-result-ignored",
        MODULE_PY,
        "                    if hook_result is not None:\n"
        "                        result = hook_result\n\n            if bw_hook:",
        "                    if hook_result is not None:\n"
        "                        pass\n\n            if bw_hook:",
        HOOKS,
    ),
    Mutation(
        "always-called-hook-rerun",
        MODULE_PY,
        "called_always_called_hooks.add(hook_id)",
        "pass",
        HOOKS,
    ),
    Mutation(
        "fast-path-ignores-global-forward-hooks",
        MODULE_PY,
        "            or _global_forward_hooks\n"
        "            or _global_forward_pre_hooks\n        ):",
        "            or _global_forward_pre_hooks\n        ):",
        HOOKS,
    ),
    Mutation(
        "fast-path-ignores-global-backward-hooks",
        MODULE_PY,
        "            or _global_backward_pre_hooks\n            or _global_backward_hooks\n",
        "            or _global_backward_pre_hooks\n",
        HOOKS,
    ),
    # -- nn.Module: state_dict, attributes, modes ------------------------------------
    Mutation(
        "state-dict-keeps-non-persistent",
        MODULE_PY,
        "if buf is not None and name not in self._non_persistent_buffers_set:",
        "if buf is not None:",
        STATE,
    ),
    Mutation(
        "state-dict-ignores-keep-vars",
        MODULE_PY,
        "destination[prefix + name] = param if keep_vars else param.detach()",
        "destination[prefix + name] = param.detach()",
        STATE,
    ),
    Mutation(
        "load-state-dict-ignores-missing",
        MODULE_PY,
        "            if len(missing_keys) > 0:\n                error_msgs.insert(",
        "            if len(missing_keys) > 99:\n                error_msgs.insert(",
        STATE,
    ),
    Mutation(
        "parameter-assignment-keeps-buffer",
        MODULE_PY,
        "            remove_from(\n                self.__dict__,\n                self._buffers,\n"
        "                self._modules,",
        "            remove_from(\n                self.__dict__,\n                self._modules,",
        MODULE,
    ),
    Mutation(
        "train-not-recursive",
        MODULE_PY,
        "        for module in self.children():\n            module.train(mode)",
        "        for module in self.children():\n            pass",
        MODULE,
    ),
    Mutation(
        "zero-grad-keeps-grads",
        MODULE_PY,
        "p.grad = None",
        "p.grad.zero_()",
        MODULE,
    ),
    # -- BatchNorm -------------------------------------------------------------------
    Mutation(
        "batchnorm-version-1",
        BN_PY,
        "    _version = 2  # version 2",
        "    _version = 1  # version 2",
        BN + STATE,
    ),
    Mutation(
        "batchnorm-no-version-1-migration",
        BN_PY,
        "if (version is None or version < 2) and self.track_running_stats:",
        "if version is None and self.track_running_stats:",
        BN,
    ),
    Mutation(
        "batchnorm-cumulative-average-off-by-one",
        BN_PY,
        "exponential_average_factor = 1.0 / float(self.num_batches_tracked)",
        "exponential_average_factor = 1.0 / float(self.num_batches_tracked + 1)",
        BN,
    ),
    Mutation(
        "batchnorm-counts-twice",
        BN_PY,
        "self.num_batches_tracked.add_(1)\n            if self.momentum is None:"
        "  # use cumulative moving average\n"
        "                exponential_average_factor = 1.0 / float(",
        "self.num_batches_tracked.add_(2)\n            if self.momentum is None:"
        "  # use cumulative moving average\n"
        "                exponential_average_factor = 1.0 / float(",
        BN,
    ),
    Mutation(
        "batchnorm-eval-uses-batch-stats",
        BN_PY,
        "        if self.training:\n            return True\n        return (",
        "        if True:\n            return True\n        return (",
        BN,
    ),
    Mutation(
        "batchnorm-reset-var-to-zero",
        BN_PY,
        "self.running_var.fill_(1)",
        "self.running_var.fill_(0)",
        BN,
    ),
    # -- SGD (the rest of reimpl/optim is being rewritten) ---------------------------
    Mutation(
        "sgd-dampening-ignored",
        "reimpl/optim/sgd.py",
        "buf.mul_(momentum).add_(grad, alpha=1 - dampening)",
        "buf.mul_(momentum).add_(grad, alpha=1)",
        SGD,
    ),
    Mutation(
        "sgd-nesterov-ignored",
        "reimpl/optim/sgd.py",
        "grad = grad.add(buf, alpha=momentum) if nesterov else buf",
        "grad = buf",
        SGD,
    ),
    # -- DataParallel: scatter, replicate, forward -----------------------------------
    Mutation(
        "scatter-first-chunk-not-moved",
        "reimpl/nn/parallel/comm.py",
        "return tuple(to_device(c, d) for c, d in zip(chunks, devices))",
        "return tuple(chunks)",
        DP,
    ),
    Mutation(
        "scatter-kwargs-no-padding",
        "reimpl/nn/parallel/scatter_gather.py",
        "            scattered_inputs.extend(\n"
        "                () for _ in range(len(scattered_kwargs) - len(scattered_inputs))\n"
        "            )",
        "            pass",
        DP,
    ),
    Mutation(
        "replica-keeps-parameters",
        MODULE_PY,
        "        replica._parameters = {}\n",
        "        replica._parameters = dict(self._parameters)\n",
        DP,
    ),
    Mutation(
        "data-parallel-replicates-on-every-device",
        "reimpl/nn/parallel/data_parallel.py",
        "replicas = self.replicate(self.module, self.device_ids[: len(inputs)])",
        "replicas = self.replicate(self.module, self.device_ids)",
        DP,
    ),
    Mutation(
        "data-parallel-gathers-on-dim-0",
        "reimpl/nn/parallel/data_parallel.py",
        "return gather(outputs, output_device, dim=self.dim)",
        "return gather(outputs, output_device, dim=0)",
        DP,
    ),
    Mutation(
        "replica-grad-mode-always-on",
        "reimpl/nn/parallel/parallel_apply.py",
        "torch.set_grad_enabled(state.grad_enabled)",
        "torch.set_grad_enabled(True)",
        DP,
    ),
    Mutation(
        "replica-input-not-wrapped",
        "reimpl/nn/parallel/parallel_apply.py",
        "                if not isinstance(input, (list, tuple)):\n"
        "                    input = (input,)",
        "                if False:\n                    input = (input,)",
        DP,
    ),
    Mutation(
        "replicate-plain-buffers-through-autograd",
        "reimpl/nn/parallel/replicate.py",
        "_broadcast_coalesced_reshape(buffers_not_rg, devices, detach=True)",
        "_broadcast_coalesced_reshape(buffers_not_rg, devices, detach=detach)",
        DP,
    ),
    # -- samplers --------------------------------------------------------------------
    Mutation(
        "random-sampler-replacement-one-chunk",
        SAMPLER_PY,
        "for _ in range(self.num_samples // 32):",
        "for _ in range(0):",
        SAMPLER,
    ),
    Mutation(
        "random-sampler-one-pass-short",
        SAMPLER_PY,
        "for _ in range(self.num_samples // n):",
        "for _ in range(self.num_samples // n - 1):",
        SAMPLER,
    ),
    Mutation(
        "batch-sampler-drop-last-length",
        SAMPLER_PY,
        "return len(self.sampler) // self.batch_size  # type: ignore[arg-type]",
        "return (len(self.sampler) + self.batch_size - 1) // self.batch_size"
        "  # type: ignore[arg-type]",
        SAMPLER,
    ),
    Mutation(
        "batch-sampler-keeps-partial",
        SAMPLER_PY,
        "            for batch_droplast in zip(*args):",
        "            for batch_droplast in itertools.zip_longest(*args):",
        SAMPLER,
    ),
    Mutation(
        "weighted-sampler-replacement-ignored",
        SAMPLER_PY,
        "self.weights, self.num_samples, self.replacement, generator=self.generator",
        "self.weights, self.num_samples, True, generator=self.generator",
        SAMPLER,
    ),
    # -- tracer analysis: the numba kernels ------------------------------------------
    Mutation(
        "parents-claim-one-child",
        AGGREGATE_PY,
        "while t >= 0 and ids[t] > my_id:",
        "if t >= 0 and ids[t] > my_id:",
        AGGREGATE,
    ),
    Mutation(
        "parents-claim-equal-ids",
        AGGREGATE_PY,
        "while t >= 0 and ids[t] > my_id:",
        "while t >= 0 and ids[t] >= my_id:",
        AGGREGATE,
        why="equivalent: ids are unique within a process (`sink.next_id`), and a stack "
        "only holds rows of one thread of one process, so `ids[t] == my_id` never happens",
    ),
    Mutation(
        "depth-not-accumulated",
        AGGREGATE_PY,
        "depth[row] = depth[p] + 1",
        "depth[row] = 1",
        AGGREGATE,
    ),
    Mutation(
        "call-paths-ignore-kind",
        AGGREGATE_PY,
        "key = (parent_path, np.int64(kind[row]), np.int64(name[row]))",
        "key = (parent_path, np.int64(0), np.int64(name[row]))",
        AGGREGATE,
    ),
    Mutation(
        "call-paths-ignore-parent",
        AGGREGATE_PY,
        "parent_path = path[p] if p >= 0 else -1",
        "parent_path = -1",
        AGGREGATE,
    ),
    Mutation(
        "sum-by-keeps-last",
        AGGREGATE_PY,
        "out[keys[i]] += values[i]",
        "out[keys[i]] = values[i]",
        AGGREGATE,
    ),
    Mutation(
        "covered-self-time-counts-other-threads",
        AGGREGATE_PY,
        "if thread[k] != thread[p]:",
        "if False:",
        AGGREGATE,
    ),
    Mutation(
        "covered-self-time-sums-overlaps",
        AGGREGATE_PY,
        "if s > run_end:  # a new run of covered time",
        "if True:  # a new run of covered time",
        AGGREGATE,
    ),
    Mutation(
        "covered-self-time-not-clipped",
        AGGREGATE_PY,
        "e = min(end[k], end[p])",
        "e = end[k]",
        AGGREGATE,
    ),
    Mutation(
        "calls-graph-self-is-inclusive",
        "tracer/graphs/calls.py",
        "own=aggregate.sum_by(node_of_sel, own_all[rows], n_nodes),",
        "own=aggregate.sum_by(node_of_sel, trace.dur_ns[rows], n_nodes),",
        AGGREGATE,
    ),
    # -- tracer analysis: the summary ------------------------------------------------
    Mutation(
        "summary-kinds-ascending",
        SUMMARY_PY,
        'kinds.sort(key=lambda g: -g["self_ns"])',
        'kinds.sort(key=lambda g: g["self_ns"])',
        SUMMARY,
    ),
    Mutation(
        "summary-top-self-by-inclusive",
        SUMMARY_PY,
        '"top_self": sorted(spans, key=lambda g: -g["self_ns"])[:top],',
        '"top_self": sorted(spans, key=lambda g: -g["incl_ns"])[:top],',
        SUMMARY,
    ),
    Mutation(
        "summary-kind-self-is-inclusive",
        SUMMARY_PY,
        "own = aggregate.sum_by(inverse, trace.self_ns[rows], len(uniq))",
        "own = aggregate.sum_by(inverse, trace.dur_ns[rows], len(uniq))",
        SUMMARY,
    ),
    Mutation(
        "summary-wall-from-last-start",
        SUMMARY_PY,
        "int(trace.end_ns.max() - trace.start_ns.min())",
        "int(trace.end_ns.max() - trace.start_ns.max())",
        SUMMARY,
    ),
    Mutation(
        "summary-path-self-is-inclusive",
        SUMMARY_PY,
        "own = aggregate.sum_by(path[rows], trace.self_ns[rows], n_paths)",
        "own = aggregate.sum_by(path[rows], trace.dur_ns[rows], n_paths)",
        SUMMARY,
    ),
    Mutation(
        "summary-path-label-without-parents",
        SUMMARY_PY,
        'labels.append(label if parent < 0 else f"{labels[parent]} > {label}")',
        "labels.append(label)",
        SUMMARY,
    ),
    Mutation(
        "summary-top-paths-unlimited",
        SUMMARY_PY,
        '"top_paths": sorted(paths, key=lambda g: -g["incl_ns"])[:top],',
        '"top_paths": sorted(paths, key=lambda g: -g["incl_ns"]),',
        SUMMARY,
    ),
    Mutation(
        "summary-thread-spans-of-first-lane",
        SUMMARY_PY,
        '"spans": int(lanes[t.row]),',
        '"spans": int(lanes[0]),',
        SUMMARY,
    ),
    Mutation(
        "summary-text-in-microseconds",
        SUMMARY_PY,
        'return f"{ns / 1e6:10.3f}"',
        'return f"{ns / 1e3:10.3f}"',
        SUMMARY,
    ),
]


NOT_LISTED = [
    "Not in the list, because reimpl/optim/ is being rewritten (a snippet there would go",
    "stale): removing `update_bn`'s early return for a model without BatchNorm",
    "(`reimpl/optim/swa_utils.py`) survived tests/reimpl/optim/test_swa_utils.py, whose",
    "`test_update_bn_without_batchnorm_is_a_no_op` asserted nothing, and is killed by",
    "tests/reimpl/optim/test_swa_update_bn_no_op.py (the loader is read, forwards run).",
]


def copy_repo(dest: Path) -> None:
    """The working tree's files that git knows or would add, into ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        rel = raw.decode()
        src = REPO / rel
        if src.is_file():  # a deleted but still tracked file is skipped
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def environment(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(copy),
        PYTHONDONTWRITEBYTECODE="1",
        NUMBA_CACHE_DIR=str(copy / ".numba-cache"),
    )
    return env


def check_imports(copy: Path, env: dict[str, str]) -> None:
    """The copy's packages are the ones imported, not the editable install's."""
    code = "import reimpl, tracer, sys; print(reimpl.__file__); print(tracer.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=copy, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    for path in out:
        if not Path(path).resolve().is_relative_to(copy.resolve()):
            raise SystemExit(f"mutate: imported {path}, not the copy in {copy}")


def run_tests(copy: Path, env: dict[str, str], tests: tuple[str, ...]) -> tuple[str, float, str]:
    """("passed" | "failed" | "timeout", seconds, the first failing test or the last lines)."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0, ""
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    failed = [x.split(" - ")[0].split()[1] for x in lines if x.startswith(("FAILED ", "ERROR "))]
    tail = failed[0] if failed else "\n".join(lines[-3:])
    return ("passed" if proc.returncode == 0 else "failed"), time.perf_counter() - t0, tail


@dataclass
class Result:
    mutation: Mutation
    outcome: str  # killed | survived | timeout (killed) | stale
    seconds: float
    tail: str


def apply_and_run(copy: Path, env: dict[str, str], m: Mutation) -> Result:
    """Applies ``m`` to the copy, runs its tests, restores the file (and its mtime)."""
    target = copy / m.path
    original = target.read_text(encoding="utf-8")
    if original.count(m.original) != 1:
        found = original.count(m.original)
        return Result(m, "stale", 0.0, f"snippet found {found} times in {m.path}")
    stat = target.stat()
    target.write_text(original.replace(m.original, m.mutant), encoding="utf-8")
    mutant_env = env
    if "njit" in original:  # compiled kernels: a cache that no other run reads
        mutant_env = dict(env, NUMBA_CACHE_DIR=str(copy / ".numba-cache-mutants" / m.name))
    try:
        status, seconds, tail = run_tests(copy, mutant_env, m.tests)
    finally:
        target.write_text(original, encoding="utf-8")
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    outcome = {"passed": "survived", "failed": "killed", "timeout": "timeout (killed)"}[status]
    return Result(m, outcome, seconds, tail)


def render(results: list[Result], baseline_s: float, total_s: float) -> str:
    """The report: a summary, every mutant's fate, and why each survivor is acceptable."""
    killed = [r for r in results if r.outcome.startswith(("killed", "timeout"))]
    survived = [r for r in results if r.outcome == "survived"]
    stale = [r for r in results if r.outcome == "stale"]
    counted = len(killed) + len(survived)
    issue = [r for r in results if r.mutation.issue]
    issue_killed = [r for r in issue if r in killed]
    rate = 100.0 * len(killed) / counted if counted else 0.0
    out = [
        "# Mutation testing",
        "",
        "Written by `.venv/bin/python benchmarks/mutate.py` (the list of mutations is in that",
        "file): each mutant is one named source change, applied to a copy of the repository,",
        "and killed when the test files named for it fail.",
        "",
        f"- mutants: {counted} ({len(killed)} killed, {len(survived)} survived)"
        + (f", {len(stale)} stale (snippet not found, not counted)" if stale else ""),
        f"- kill rate: {rate:.1f}%",
        f"- the deliberate bugs named in issue 23: {len(issue_killed)} of {len(issue)} killed",
        f"- time: {total_s / 60:.1f} min in all ({baseline_s:.0f} s for the unmutated baseline)",
        "",
        "| mutant | file | issue 23 item | result | first failing test | s |",
        "| --- | --- | --- | --- | --- | ---: |",
    ]
    for r in results:
        m = r.mutation
        caught = f"`{r.tail}`" if r.outcome == "killed" and "::" in r.tail else ""
        out.append(
            f"| `{m.name}` | `{m.path}` | {m.issue} | {r.outcome} | {caught} | {r.seconds:.0f} |"
        )
    out += [
        "",
        "## The deliberate bugs of issue 23",
        "",
        "What the suite did with each before the tests written for the issue (measured",
        "once on the commit before them), and the test that kills it now.",
        "",
        "| mutant | before | now killed by |",
        "| --- | --- | --- |",
    ]
    for r in issue:
        now = f"`{r.tail}`" if r in killed and "::" in r.tail else r.outcome
        out.append(f"| `{r.mutation.name}` | {r.mutation.before} | {now} |")
    out += ["", *NOT_LISTED]
    out += ["", "## Survivors", ""]
    if not survived:
        out.append("None.")
    for r in survived:
        why = r.mutation.why or "not explained yet: a test is missing"
        out.append(f"- `{r.mutation.name}` ({r.mutation.path}): {why}")
    if stale:
        out += ["", "## Stale mutations", ""]
        out += [f"- `{r.mutation.name}`: {r.tail}" for r in stale]
    out += [
        "",
        "## What each mutant runs",
        "",
        *(f"- `{m.name}`: {' '.join(m.tests)}" for m in (r.mutation for r in results)),
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], help="run this mutant (repeat)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--report", type=Path, help=f"where to write (default {REPORT})")
    args = parser.parse_args(argv)
    # killed: unwind, so the running pytest is killed and the copy removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    unknown = set(args.only) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"unknown mutants: {', '.join(sorted(unknown))}")
    if len({m.name for m in MUTATIONS}) != len(MUTATIONS):
        parser.error("two mutations share a name")
    if args.list:
        for m in chosen:
            print(f"{m.name:45} {m.path:40} {m.issue}")
        return 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="torchscope-mutate-") as tmp:
        copy = Path(tmp) / "repo"
        copy_repo(copy)
        env = environment(copy)
        check_imports(copy, env)
        files = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        status, baseline_s, tail = run_tests(copy, env, files)
        print(f"baseline ({len(files)} test paths): {status} in {baseline_s:.0f} s", flush=True)
        if status != "passed":
            print(tail, file=sys.stderr)
            return 2
        results = []
        for m in chosen:
            r = apply_and_run(copy, env, m)
            print(f"{r.outcome:17} {r.seconds:5.0f} s  {m.name}", flush=True)
            results.append(r)
    report = render(results, baseline_s, time.perf_counter() - start)
    target = args.report or (REPORT if not args.only else None)
    if target is not None:
        target.write_text(report, encoding="utf-8")
        print(f"wrote {target}")
    else:
        print(report)
    return 0 if all(r.outcome != "survived" or r.mutation.why for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
