"""`quantize --max-drop`: the fastest int8 model that loses at most what the user allows.

All-int8 is the fastest model and may cost too much accuracy; the float model keeps it all. In between,
keeping a few ops float (a quantize/dequantize pair around each float island) buys accuracy back for a little
speed. The search, measured for real at every step (the caller's `measure`: mAP on the user's labelled
images and the latency of each candidate, never a proxy alone):

1. calibrate once (activation ranges of every tensor), quantize all-int8, measure it: within the budget,
   done;
2. rank the ops by how much signal quantizing them costs: the quantizer's own per-tensor comparison of the
   all-int8 model against float (SNR on calibration images), an op's cost being the SNR lost between its
   inputs and its output (an op that only passes on an earlier op's error costs little);
3. keep float the known suspects first — the ops after the last concatenation, YOLO's box decode and DFL —
   then those plus the k costliest ops for k = 1, 2, 4, 8 … until a candidate is within the budget, then
   halve the step between the last miss and the first hit (fewer float ops, faster);
4. then try to quantize again what turned out not to matter: each float op of the best candidate, costliest
   last, one at a time (a candidate that still holds the budget replaces it).
Bounded by `max_trials` and `time_limit`; the best model found is always kept.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .quantizer_package import quantizer_api

Say = Callable[[str], None]


@dataclass(frozen=True)
class Op:
    """An op of the float model, named as the quantizer names it: its output tensors (its scope)."""

    index: int
    kind: str
    outputs: Tuple[str, ...]
    inputs: Tuple[str, ...]  # activation inputs (tensors produced by an op or fed to the model)

    @property
    def scope(self) -> str:
        return "".join(name + ";" for name in self.outputs)

    @property
    def label(self) -> str:
        """Short, for people: the kind and the first name of its output (converters join several with ';')."""
        return f"{self.kind} {self.outputs[0].split(';')[0] if self.outputs else self.index}"


@dataclass
class Score:
    """What `measure` says of a model: the accuracy the budget is about, and how fast it runs."""

    accuracy: float  # mAP50-95 for detectors
    latency_ms: float
    extra: Dict[str, float] = field(default_factory=dict)  # map50, latency p95, …


@dataclass
class Trial:
    name: str
    float_ops: Tuple[int, ...]  # op indexes kept float
    score: Score
    data: bytes
    seconds: float
    why: str = ""

    def drop(self, reference: Score) -> float:
        return reference.accuracy - self.score.accuracy


@dataclass
class SearchResult:
    reference: Score
    trials: List[Trial]
    best: Optional[Trial]
    within_budget: bool
    ops: List[Op]
    stopped: str = ""  # why the search ended early (trials, time), if it did


def quantizer_package():
    """litert-quantizer, the package's new name, else its old one, ai-edge-quantizer (the same API)."""
    import importlib

    for name in ("litert_quantizer", "ai_edge_quantizer"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    from ..errors import UnavailableError

    raise UnavailableError("calibrated quantization needs litert-quantizer: pip install \"pidetect[quantize]\" "
                           "(not needed by the daemon, nor for uint8 models)")


def model_ops(data: bytes) -> List[Op]:
    """The float model's ops with their scopes and activation inputs."""
    from .quantize import _load
    from .requantize import _op_name

    schema, model = _load(data)
    graph = model.subgraphs[0]
    produced = {int(o) for op in graph.operators for o in op.outputs}
    fed = produced | {int(i) for i in graph.inputs}

    def name(index: int) -> str:
        raw = graph.tensors[index].name
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    ops = []
    for number, op in enumerate(graph.operators):
        code = model.operatorCodes[op.opcodeIndex]
        kind = code.customCode.decode() if code.customCode else _op_name(schema, code)
        outputs = tuple(name(int(i)) for i in op.outputs if i >= 0)
        inputs = tuple(name(int(i)) for i in op.inputs if i >= 0 and int(i) in fed)
        ops.append(Op(number, kind, outputs, inputs))
    return ops


def downstream(ops: Sequence[Op], start: int) -> List[int]:
    """`start` and every op that consumes what it makes, up to the outputs: a float block that reaches the end
    (one dequantize on the way in, none on the way out: no float island is left between int8 ops)."""
    consumers: Dict[str, List[int]] = {}
    for op in ops:
        for name in op.inputs:
            consumers.setdefault(name, []).append(op.index)
    found, stack = set(), [start]
    while stack:
        index = stack.pop()
        if index in found:
            continue
        found.add(index)
        for name in ops[index].outputs:
            stack.extend(consumers.get(name, ()))
    return sorted(found)


def detection_head(ops: Sequence[Op]) -> List[int]:
    """The known suspects: every op after the last concatenation that joins the feature maps (three or more
    inputs: YOLO's scales, SSD's box predictors), YOLO's DFL and box decode among them; where int8 costs most
    accuracy, and few ops."""
    consumed = {name for op in ops for name in op.inputs}
    joins = [op.index for op in ops if op.kind == "CONCATENATION" and len(op.inputs) >= 3
             and any(name in consumed for name in op.outputs)]  # not the one that makes the model's output
    if not joins:
        return []
    return [index for index in downstream(ops, max(joins)) if index != max(joins)]


def sensitivity(ops: Sequence[Op], snr: Dict[str, float]) -> Dict[int, float]:
    """The noise an op adds when quantized, as a share of its output's signal: 1/SNR of its output less 1/SNR of
    its noisiest input. (A loss in dB would blame the first layers, whose input is nearly exact; what hurts is
    where the signal ends up noisy.)"""
    def noise(value: Optional[float]) -> Optional[float]:
        if value is None or not math.isfinite(value) or value <= 0:
            return None
        return 1.0 / value

    cost = {}
    for op in ops:
        out = [noise(snr.get(name)) for name in op.outputs]
        out = [value for value in out if value is not None]
        if not out:
            continue
        ins = [noise(snr.get(name)) for name in op.inputs]
        ins = [value for value in ins if value is not None]
        cost[op.index] = max(0.0, max(out) - (max(ins) if ins else 0.0))
    return cost


def scheme_recipe(name: str):
    """The quantizer's recipe for each scheme of the trade-off report (besides float32 and the budget model)."""
    import importlib

    package = quantizer_package().__name__
    recipe = importlib.import_module(f"{package}.recipe")
    recipe_manager = importlib.import_module(f"{package}.recipe_manager")
    qtyping = importlib.import_module(f"{package}.qtyping")
    algorithms = importlib.import_module(f"{package}.algorithm_manager").AlgorithmName
    every_op = qtyping.TFLOperationName.ALL_SUPPORTED
    if name == "int8 per-channel":
        return recipe.static_wi8_ai8()
    if name == "dynamic-range int8":
        return recipe.dynamic_wi8_afp32()
    if name == "int16 activations (a16w8)":
        return recipe.static_wi8_ai16()
    manager = recipe_manager.RecipeManager()
    if name == "int8 per-tensor":
        manager.add_static_config(regex=".*", operation_name=every_op, activation_num_bits=8, weight_num_bits=8,
                                  weight_granularity=qtyping.QuantGranularity.TENSORWISE)
    elif name == "float16 weights":
        manager.add_weight_only_config(regex=".*", operation_name=every_op, num_bits=16,
                                       algorithm_key=algorithms.FLOAT_CASTING)
    else:
        raise ValueError(name)
    return manager.get_quantization_recipe()


SCHEMES = ("float16 weights", "dynamic-range int8", "int8 per-tensor", "int16 activations (a16w8)")


class BudgetSearch:
    """One search over one float model. `measure(path) -> Score` runs a candidate for real."""

    def __init__(self, float_data: bytes, signature: str, samples: List[dict], measure: Callable[[Path], Score],
                 max_drop: float, max_trials: int = 24, time_limit: float = 15 * 60, say: Say = print,
                 finish: Callable[[bytes], bytes] = lambda data: data):
        self.float_data, self.signature, self.samples = float_data, signature, samples
        self.measure, self.max_drop, self.max_trials = measure, max_drop, max_trials
        self.time_limit, self.say, self.finish = time_limit, say, finish
        self.started = time.monotonic()
        self.trials: List[Trial] = []
        self.reference: Optional[Score] = None
        self._folder = tempfile.TemporaryDirectory(prefix="pidetect-budget-")
        self.folder = Path(self._folder.name)
        self.float_path = self.folder / "float.tflite"
        self.float_path.write_bytes(float_data)
        self.ops = model_ops(float_data)
        self._qsv = None

    def close(self) -> None:
        self._folder.cleanup()

    # --- the steps ---------------------------------------------------------------------------------------
    def run(self) -> SearchResult:
        self.say("measuring the float model ...")
        self.reference = self.measure(self.float_path)
        self.say(f"float: accuracy {self.reference.accuracy:.4f}, {self.reference.latency_ms:.1f} ms; budget: at "
                 f"least {self.reference.accuracy - self.max_drop:.4f}")
        quantizer, recipe, _metric = quantizer_api()
        self.say(f"calibrating on {len(self.samples)} image(s) ...")
        with _quiet():
            calibrating = quantizer.Quantizer(str(self.float_path))
            calibrating.load_quantization_recipe(recipe.static_wi8_ai8())
            self._qsv = calibrating.calibrate({self.signature: self.samples})
        everything = self._trial("all int8", ())
        stopped = ""
        if not self._within(everything):
            ranked, cost = self._ranked(everything.data)
            suspects = tuple(detection_head(self.ops))
            stopped = self._grow(suspects, ranked, cost)
            if not stopped:
                stopped = self._shrink(cost)
        best = self._best()
        return SearchResult(self.reference, self.trials, best, best is not None and self._within(best), self.ops,
                            stopped)

    def _blocks(self, suspects: Tuple[int, ...], ranked: List[int], k: int) -> Tuple[int, ...]:
        """The suspects and, for each of the k costliest ops, the block from it to the outputs."""
        chosen = set(suspects)
        for index in ranked[:k]:
            chosen.update(downstream(self.ops, index))
        return tuple(sorted(chosen))

    def _grow(self, suspects: Tuple[int, ...], ranked: List[int], cost: Dict[int, float]) -> str:
        """Suspects, then suspects + the blocks of the k costliest ops, k doubling, then halving the step back."""
        if suspects:
            trial = self._trial("the detection head float", suspects,
                                why="the ops after the feature maps join (box decode)")
            if trial is None:
                return self._why_stopped()
            if self._within(trial):
                return ""
        extra = [index for index in ranked if index not in suspects]

        def blocks(k: int) -> Optional[Trial]:
            return self._trial(f"{k} costliest block(s) float", self._blocks(suspects, extra, k),
                               why=f"from the {k} op(s) that add most noise in int8 to the outputs")

        misses, hit, k = 0, None, 1
        while k <= len(extra):
            trial = blocks(k)
            if trial is None:
                return self._why_stopped()
            if self._within(trial):
                hit = k
                break
            misses, k = k, k * 2
        if hit is None:
            return ""
        low, high = misses, hit
        while high - low > 1:
            middle = (low + high) // 2
            trial = blocks(middle)
            if trial is None:
                return self._why_stopped()
            low, high = (low, middle) if self._within(trial) else (middle, high)
        return ""

    def _shrink(self, cost: Dict[int, float]) -> str:
        """Quantize again what turned out not to matter: the least costly half of the float ops, then a quarter …
        down to one op at a time, each kept out of the float set while the budget holds."""
        best = self._best()
        if best is None or not best.float_ops or not self._within(best):
            return ""
        kept = sorted(best.float_ops, key=lambda i: cost.get(i, 0.0))  # least costly first
        size = max(1, len(kept) // 2)
        while kept:
            removed_any = False
            for start in range(0, len(kept), size):
                part = kept[start:start + size]
                candidate = tuple(sorted(set(kept) - set(part)))
                if not candidate or any(t.float_ops == candidate for t in self.trials):
                    continue
                trial = self._trial(f"{len(candidate)} ops float", candidate,
                                    why=f"{len(part)} least costly op(s) quantized again")
                if trial is None:
                    return self._why_stopped()
                if self._within(trial):
                    kept = [i for i in kept if i not in part]
                    removed_any = True
                    break
            if not removed_any:
                if size == 1:
                    break
                size = max(1, size // 2)
        return ""

    def other_schemes(self) -> List[Trial]:
        """The rest of the trade-off: every scheme the quantizer offers besides int8 per-channel, measured the same
        way (not counted as search trials). A scheme the model cannot take is left out and said."""
        measured = []
        for name in SCHEMES:
            started = time.monotonic()
            try:
                data = self._quantized(scheme_recipe(name), ())
                score = self._measure_bytes(data, f"scheme-{len(measured)}")
            except Exception as exc:  # the quantizer or the runtime refuses this scheme for this model
                self.say(f"{name}: not measured ({type(exc).__name__}: {str(exc)[:160]})")
                continue
            measured.append(Trial(name, (), score, data, time.monotonic() - started, "scheme"))
            self.say(f"{name}: accuracy {score.accuracy:.4f}, {score.latency_ms:.1f} ms")
        return measured

    # --- one candidate ------------------------------------------------------------------------------------
    def _quantized(self, recipe_value, float_ops: Tuple[int, ...]) -> bytes:
        quantizer, _recipe, _metric = quantizer_api()
        with _quiet():
            qt = quantizer.Quantizer(str(self.float_path))
            qt.load_quantization_recipe(recipe_value)
            if float_ops:  # an op's scope is its output names, each followed by ';': matched whole
                regex = "^(?:" + "|".join(re.escape(self.ops[i].scope) for i in float_ops) + ")$"
                qt.update_quantization_recipe(regex=regex, operation_name="*", algorithm_key="no_quantize")
            result = qt.quantize(self._qsv if qt.need_calibration else None)
        return self.finish(bytes(result.quantized_model))

    def _measure_bytes(self, data: bytes, stem: str) -> Score:
        path = self.folder / f"{stem}.tflite"
        path.write_bytes(data)
        try:
            return self.measure(path)
        finally:
            path.unlink()

    def _trial(self, name: str, float_ops: Tuple[int, ...], why: str = "") -> Optional[Trial]:
        if self._why_stopped():
            return None
        started = time.monotonic()
        _quantizer, recipe, _metric = quantizer_api()
        data = self._quantized(recipe.static_wi8_ai8(), float_ops)
        score = self._measure_bytes(data, f"trial-{len(self.trials)}")
        trial = Trial(name, tuple(float_ops), score, data, time.monotonic() - started, why)
        self.trials.append(trial)
        best = self._best()
        self.say(f"trial {len(self.trials)}/{self.max_trials} {name}: accuracy {score.accuracy:.4f} "
                 f"(drop {trial.drop(self.reference):+.4f}), {score.latency_ms:.1f} ms — best so far: "
                 + (f"{best.name} ({best.score.latency_ms:.1f} ms)" if best and self._within(best) else "none within budget")
                 + f"; {max(0.0, self.time_limit - (time.monotonic() - self.started)) / 60:.1f} min left")
        return trial

    def _ranked(self, all_int8: bytes) -> Tuple[List[int], Dict[int, float]]:
        """The ops by the noise they add, from the all-int8 candidate already made (not quantized again)."""
        quantizer, _recipe, metric = quantizer_api()
        with _quiet():
            qt = quantizer.Quantizer(str(self.float_path), previous_quantized_model=all_int8)
            results = qt.validate({self.signature: self.samples[:8]}, error_metrics=[metric.SNR])
        snr = {name: values.get("snr") for name, values in results.get_all_tensor_results().items()}
        cost = sensitivity(self.ops, snr)
        ranked = sorted(cost, key=lambda index: -cost[index])
        shown = ", ".join(f"{self.ops[i].label} +{cost[i]:.3f}" for i in ranked[:5])
        self.say(f"the ops that add most noise in int8 (noise / signal of their output): {shown}")
        return ranked, cost

    # --- judging ------------------------------------------------------------------------------------------
    def _within(self, trial: Optional[Trial]) -> bool:
        return trial is not None and trial.drop(self.reference) <= self.max_drop + 1e-9

    def _best(self) -> Optional[Trial]:
        """Within the budget: the fastest (within 3 %, the one with fewer float ops); else the most accurate."""
        passing = [t for t in self.trials if self._within(t)]
        if not passing:
            return max(self.trials, key=lambda t: t.score.accuracy, default=None)
        fastest = min(t.score.latency_ms for t in passing)
        close = [t for t in passing if t.score.latency_ms <= fastest * 1.03]
        return min(close, key=lambda t: (len(t.float_ops), t.score.latency_ms))

    def _why_stopped(self) -> str:
        if len(self.trials) >= self.max_trials:
            return f"stopped after {self.max_trials} trials (--max-trials)"
        if time.monotonic() - self.started >= self.time_limit:
            return f"stopped after {self.time_limit / 60:g} min (--time-limit)"
        return ""


@contextlib.contextmanager
def _quiet():
    """The quantizer prints progress bars and sizes; the search says what matters itself."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
