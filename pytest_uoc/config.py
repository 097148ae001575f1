"""Settings of pytest-uoc: command line > environment > ini > marker keyword > default.

Every option is declared once in ``OPTIONS``; ``plugin.py`` turns the table
into command-line flags and ini keys, and ``resolve_settings`` reads them back,
validating each value so that a bad one is a ``pytest.UsageError`` naming the
option, the value and what is allowed, before any test runs. No torch here.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .cache import output_target
from .units import BACKBONES, CLASSIFIER_RECIPES, DEFAULT_PSIS, check_psi

__all__ = [
    "MIN_SEEDS", "OPTIONS", "Option", "Settings", "check_marker_keywords", "check_output_dir", "check_output_file",
    "budget_seeds", "check_max_seeds", "check_seeds_for_prompts", "min_seeds", "parse_seeds", "resolve_settings",
]

DTYPES = ("auto", "float32", "float16", "bfloat16")
MIXING = ("auto", "on", "off")
GUIDANCE_KINDS = ("partial", "restore")
#: What an unlearned weight file holds (``pytest_uoc.diffusion.checkpoints.KINDS``; no torch here).
CHECKPOINT_KINDS = ("auto", "diffusers", "partial", "ldm", "lora", "text_encoder")
#: Marker keywords that name an option differently: ``uoc_concept(..., kind="partial")``.
MARKER_ALIASES = {"kind": "unlearned_kind"}


class SettingError(ValueError):
    """A bad setting value; the plugin turns it into a pytest.UsageError."""


#: The most inference steps: Stable Diffusion's schedulers have 1000 training timesteps, and a
#: schedule cannot have more steps than that (diffusers fails only once the models are loaded).
MAX_STEPS = 1000
#: The most seeds per prompt (each seed is at least one image per ψ; far beyond any useful gate).
MAX_SEEDS = 100_000


def _int(minimum: int, maximum: int | None = None, why: str = "") -> Callable[[str], int]:
    expected = f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
    expected += f" ({why})" if why else ""

    def parse(text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise SettingError(f"expected {expected}") from None
        if value < minimum or maximum is not None and value > maximum:
            raise SettingError(f"expected {expected}")
        return value

    return parse


def _float(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(str(text).strip())
        except ValueError:
            raise SettingError(f"expected a number in [{low}, {high}]") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise SettingError(f"expected a number in [{low}, {high}]")
        return value

    return parse


def _choice(allowed: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = str(text).strip()
        if value not in allowed:
            raise SettingError(f"expected one of: {', '.join(allowed)}")
        return value

    return parse


def _device(text: str) -> str:
    value = str(text).strip()
    if value in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", value):
        return value
    raise SettingError("expected auto, cpu, cuda or cuda:N")


def _judge(text: str) -> str:
    """A judge spec (``judges.spec``), normalised; SettingError saying the forms expected."""
    from .judges.spec import parse_judge_spec

    try:
        return str(parse_judge_spec(str(text)))
    except ValueError as exc:
        raise SettingError(str(exc)) from None


def _location(text: str) -> str:
    value = str(text).strip()
    if not value:
        raise SettingError("expected a diffusers folder, a UNet weight file or zoo:NAME")
    if value.startswith("zoo:"):
        from . import zoo

        try:
            zoo.resolve(value)
        except (ValueError, FileNotFoundError) as exc:
            raise SettingError(str(exc)) from None
        return value
    path = Path(value).expanduser()
    if not path.exists():
        raise SettingError("the path does not exist (expected a diffusers folder, a UNet weight file or zoo:NAME)")
    return str(path)


def _path(text: str) -> str:
    value = str(text).strip()
    if not value:
        raise SettingError("expected a file or folder path")
    return value


def _input_file(text: str) -> str:
    value = _path(text)
    if not Path(value).expanduser().is_file():
        raise SettingError("the file does not exist (expected a local weights file; nothing is downloaded)")
    return value


def _writable_folder(folder: Path) -> None:
    """Raise SettingError unless ``folder`` exists as a writable folder or can be created."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise SettingError(f"{probe} is a file, so nothing can be created under it; choose another place")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise SettingError(f"{probe} is not writable; choose a writable place")
    # Permission bits are not the whole truth (root passes them everywhere, /proc and read-only
    # mounts refuse anyway): create and remove a file where the output will go, now, before any work.
    try:
        fd, tmp = tempfile.mkstemp(prefix=".uoc-write-check.", dir=str(probe))
    except OSError as exc:
        raise SettingError(f"nothing can be written in {probe} ({exc.strerror or exc}); choose a writable "
                           "place") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def check_output_file(text: Any) -> str:
    """A file path that can be written (its folder exists or can be created); the path as given.

    An existing path must be a regular file (or a symlink to one, which is then written
    through): a device, a fifo or a socket is refused, never replaced.
    """
    value = _path(text)
    path = Path(value).expanduser()
    if path.is_dir() or value.endswith(("/", os.sep)):
        raise SettingError(f"{value} names a folder; give a file path such as {Path(value) / 'uoc-report.json'}")
    try:
        target = output_target(path)
    except OSError as exc:
        raise SettingError(str(exc)) from None
    _writable_folder(target.parent)
    return value


def check_output_dir(text: Any) -> str:
    """A folder path that is (or can be created as) a writable folder; the path as given."""
    value = _path(text)
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise SettingError(f"{value} is a file; give a folder (it is created when missing)")
    _writable_folder(path)
    return value


def parse_seeds(text: Any) -> tuple[int, ...]:
    """Seeds from ``N`` (0..N-1), ``A-B`` (inclusive), or a comma list; or a list of ints."""
    if isinstance(text, list | tuple | range):
        values = list(text)
        if not values or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in values):
            raise SettingError("expected a non-empty list of non-negative integers")
        return tuple(values)
    value = str(text).strip()
    try:
        return _parse_seed_text(value)
    except _TooManySeeds as exc:
        raise SettingError(f"{exc.args[0]} seeds per prompt; expected at most {MAX_SEEDS} (each seed is one image "
                           "per prompt and ψ)") from None


def _parse_seed_text(value: str) -> tuple[int, ...]:
    try:
        if re.fullmatch(r"\d+", value):
            count = int(value)
            if count < 1:
                raise SettingError("expected at least one seed")
            return tuple(range(_check_seed_count(count)))
        match = re.fullmatch(r"(\d+)\s*-\s*(\d+)", value)
        if match:
            low, high = int(match[1]), int(match[2])
            if high < low:
                raise SettingError("expected A-B with A <= B")
            return tuple(range(low, low + _check_seed_count(high - low + 1)))
        seeds = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        seeds = ()
    if len(seeds) < 2 or any(s < 0 for s in seeds):
        raise SettingError("expected N (seeds 0..N-1), A-B, or a comma-separated list of non-negative integers")
    _check_seed_count(len(seeds))
    return seeds


class _TooManySeeds(Exception):
    """Raised inside ``parse_seeds``'s number parsing, turned into a SettingError outside it."""


def _check_seed_count(count: int) -> int:
    if count > MAX_SEEDS:
        raise _TooManySeeds(count)
    return count


#: What the seeds must feed (the probe gives the first half of the seeds to the
#: classifier, the second half is scored): the domain classifier needs at least
#: ``CLASSIFIER_MIN_PER_CLASS`` training images per class and a held-out split of a
#: quarter of its training seeds that is at least 2 seeds, i.e. at least
#: ``CLASSIFIER_MIN_TRAIN_SEEDS`` seeds (scoring/classifier.py); a verdict needs at
#: least ``VERDICT_MIN_IMAGES`` scored images per ψ (scoring/verdict.py).
CLASSIFIER_MIN_PER_CLASS = 8
CLASSIFIER_MIN_TRAIN_SEEDS = 6
VERDICT_MIN_IMAGES = 16
#: The fewest seeds any concept can work with (three or more prompts).
MIN_SEEDS = 2 * CLASSIFIER_MIN_TRAIN_SEEDS


def min_seeds(n_prompts: int) -> int:
    """The fewest seeds that give a verdict for a concept with ``n_prompts`` prompts.

    With S seeds the classifier trains on S // 2 seeds and the rest are scored:
    S // 2 >= 6, n_prompts * (S // 2) >= 8 and n_prompts * (S - S // 2) >= 16.
    One prompt needs 31 seeds, two 15, three or more 12.
    """
    n = max(1, int(n_prompts))
    per_train = max(CLASSIFIER_MIN_TRAIN_SEEDS, -(-CLASSIFIER_MIN_PER_CLASS // n))
    per_eval = -(-VERDICT_MIN_IMAGES // n)
    return max(2 * per_train, 2 * per_eval - 1)


def check_seeds_for_prompts(seeds: tuple[int, ...], n_prompts: int, *, where: str = "") -> None:
    """Raise SettingError when ``seeds`` are too few for a concept with ``n_prompts`` prompts."""
    need = min_seeds(n_prompts)
    if len(seeds) < need:
        plural = "" if n_prompts == 1 else "s"
        raise SettingError(
            f"{where}{len(seeds)} seeds are too few for {n_prompts} prompt{plural}: a verdict needs "
            f"{VERDICT_MIN_IMAGES} scored images per psi and the classifier {CLASSIFIER_MIN_PER_CLASS} training "
            f"images per class from at least {CLASSIFIER_MIN_TRAIN_SEEDS} seeds (the first half of the seeds "
            f"trains, the second half is scored); use at least {need} seeds (--uoc-seeds {need}) or more prompts"
        )


def check_max_seeds(seeds: tuple[int, ...], max_seeds: int | None, *, where: str = "") -> None:
    """Raise SettingError when a sequential gate's budget ``max_seeds`` is below the seeds it starts from."""
    if max_seeds is not None and max_seeds < len(seeds):
        raise SettingError(
            f"{where}max_seeds={max_seeds} is below the {len(seeds)} seeds per prompt the gate starts from: "
            f"the budget (--uoc-max-seeds) extends the seeds, so give at least {len(seeds)}, or fewer seeds"
        )


def budget_seeds(seeds: Sequence[int], max_seeds: int | None) -> list[int]:
    """``seeds``, then the seeds after the largest, up to ``max_seeds`` in all (None: ``seeds`` as they are).

    The extension is disjoint from ``seeds`` and fixed by them, so the same options spend the same seeds.
    """
    check_max_seeds(tuple(seeds), max_seeds)
    extra = 0 if max_seeds is None else max_seeds - len(seeds)
    start = max(seeds) + 1 if len(seeds) else 0
    return [*seeds, *range(start, start + extra)]


def _seeds(text: str) -> tuple[int, ...]:
    seeds = parse_seeds(text)
    if len(set(seeds)) != len(seeds):
        raise SettingError("expected distinct seeds (a repeated seed adds no evidence)")
    if len(seeds) < MIN_SEEDS:
        raise SettingError(
            f"expected at least {MIN_SEEDS} seeds (half train the classifier, which needs "
            f"{CLASSIFIER_MIN_TRAIN_SEEDS}, half are scored); a concept with one prompt needs {min_seeds(1)}, "
            f"with two {min_seeds(2)}"
        )
    return seeds


def _psis(text: str) -> tuple[float, ...]:
    parts = [p for p in str(text).replace(" ", "").split(",") if p]
    try:
        values = tuple(sorted({check_psi(float(p)) for p in parts}))
    except ValueError:  # not a number, or not a ψ
        values = ()
    if not values:
        raise SettingError("expected a comma-separated list of numbers in [0, 1]")
    if all(v in (0.0, 1.0) for v in values):
        raise SettingError("the grid has no ψ strictly between 0 and 1, so it tests no hand-off; a decimal comma "
                           "('0,1') reads as two values: write 0.1, and separate values with commas")
    return values


def parse_anchors(text: str) -> tuple[str, ...]:
    """Anchor prompts: one for every concept prompt, or ';'-separated, one per prompt (checked per concept)."""
    parts = tuple(part.strip() for part in str(text).split(";"))
    if not parts or any(not part for part in parts):
        raise SettingError("expected an anchor prompt, or one per concept prompt separated by ';' "
                           "(e.g. 'a painting;a photo'); an empty part is not an anchor")
    return parts


#: Accepted values of ``--uoc-rule``.
RULES = ("calibrated", "absolute")


def _bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise SettingError("expected true or false")


@dataclass(frozen=True)
class Option:
    """One setting: its flag, ini key, environment variable, parser and default."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    env: bool = True
    flag: bool = True
    metavar: str | None = None

    @property
    def cli(self) -> str:
        return "--uoc-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "uoc_" + self.name

    @property
    def env_var(self) -> str:
        return "UOC_" + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    Option("original", _location, "zoo:digits", "original model: diffusers pipeline folder (SD 1.x/2.x, SDXL, SD3, Flux) or zoo:NAME", metavar="LOCATION"),
    Option("unlearned", _location, None, "unlearned model: diffusers folder, unet/ folder, UNet weight file or zoo:NAME", metavar="LOCATION"),
    Option("unlearned_kind", _choice(CHECKPOINT_KINDS), "auto", "what the unlearned file holds: auto (detected from its keys), diffusers, partial, ldm, lora, text_encoder"),
    Option("reference", _location, None, "gold-standard model that never learned the concept (optional)", metavar="LOCATION"),
    Option("device", _device, "auto", "auto, cpu, cuda or cuda:N (cpu runs gpu-marked tests on the CPU on purpose)"),
    Option("dtype", _choice(DTYPES), "auto", "auto (float16 on CUDA, float32 on the CPU), float32, float16, bfloat16"),
    Option("steps", _int(1, MAX_STEPS, f"the schedulers' {MAX_STEPS} training timesteps"), 50,
           "inference steps per image", metavar="N"),
    Option("guidance_scale", _float(0.0, 100.0), 7.5, "classifier-free guidance scale", metavar="SCALE"),
    Option("seeds", _seeds, tuple(range(32)), "seeds per prompt: N (0..N-1), A-B or a comma list", metavar="SEEDS"),
    Option("psis", _psis, DEFAULT_PSIS, "the ψ grid of curves and reports", metavar="LIST"),
    Option("batch_size", _int(1), 32, "images per UNet call", metavar="N"),
    Option("mix_branches", _choice(MIXING), "auto", "finish the branches of different psi in shared UNet calls: auto (on for CUDA), on, off"),
    Option("compile", _bool, False, "torch.compile the UNet calls (pays off on GPUs for long runs)"),
    Option("backbone", _choice(BACKBONES), "resnet18", "domain classifier backbone"),
    Option("backbone_weights", _input_file, None, "local ImageNet weights for the backbone (default: timm's own weights "
           "if they are in the Hugging Face or torch hub cache on disk; nothing is downloaded)", metavar="PATH"),
    Option("classifier_recipe", _choice(CLASSIFIER_RECIPES), "small", "domain classifier training: small (Adam, 8 "
           "epochs, input 64 px for images up to 64 px, else 128 px) or paper (SGD, 10 epochs, 224 px, triplet loss)"),
    Option("classifier_size", _int(16, 2048), None, "domain classifier input side in pixels (default: the recipe's)",
           metavar="PX"),
    Option("anchor", parse_anchors, None, "anchor prompts of the calibration nulls (the concept prompts with the concept's "
           "words removed): one for all, or one per prompt separated by ';' (default: derived from the prompts)",
           metavar="ANCHORS"),
    Option("judge", _judge, "auto", "what counts \"shows the concept\": auto, none (the concept classifier), zoo, "
           "nudenet, safety-checker, clip:PATH, imagenet:PATH or module:factory", metavar="SPEC"),
    Option("rule", _choice(RULES), "calibrated", "verdict rule: calibrated (against null finishes of the original, "
           "or the gold standard) or absolute (CCS against ccs_max alone)"),
    Option("sequential", _bool, False, "decide the calibrated gate in rounds of seeds and stop as soon as it is "
           "decided (confidence sequences; the seeds are the budget)"),
    Option("round_seeds", _int(1), 4, "scored seeds per prompt added per round of a sequential gate", metavar="N"),
    Option("max_seeds", _int(1, MAX_SEEDS), None, "budget of a sequential gate, in seeds per prompt (training half included): "
           "a gate still undecided after its seeds goes on with the seeds after the largest, up to N "
           "(default: as many as the seeds; at least that many)", metavar="N"),
    Option("accuracy_floor", _float(0.5, 1.0), 0.75, "held-out accuracy below which the classifier's scores are inconclusive", metavar="ACC"),
    Option("report", check_output_file, None, "write a JSON report of every curve to PATH", metavar="PATH"),
    Option("html", check_output_file, None, "write one self-contained HTML report (verdicts, curves, image grids, "
           "the run's record) to PATH", metavar="PATH"),
    Option("artifacts", check_output_dir, None, "write per-test PNG curves and image grids into DIR", metavar="DIR"),
    Option("cache_dir", check_output_dir, None, "persistent cache folder (default: under pytest's cache dir)", metavar="DIR"),
    Option("cache_max_mb", _int(0), 2048, "size limit of the persistent cache in MB; the least recently used "
           "entries are evicted at the end of a run (0: no limit)", metavar="MB"),
    Option("cache_clear", _bool, False, "clear pytest-uoc's entries in the persistent cache at start (only "
           "files it wrote; a folder of other files is refused)"),
)
_BY_NAME = {o.name: o for o in OPTIONS}


#: Keywords of the ``uoc_concept`` marker that describe the concept (read by ``Concept.from_marker``).
CONCEPT_KEYWORDS: tuple[str, ...] = ("prompts", "retain", "seeds", "anchor", "concept_words")
#: Options that hold for the whole session: a marker keyword cannot change them.
SESSION_ONLY: tuple[str, ...] = ("original", "device", "dtype", "report", "html", "artifacts", "cache_dir",
                                 "cache_max_mb", "cache_clear")


def marker_keywords() -> tuple[str, ...]:
    """Every keyword the ``uoc_concept`` marker accepts."""
    per_test = tuple(o.name for o in OPTIONS if o.name not in SESSION_ONLY and o.name not in CONCEPT_KEYWORDS)
    return CONCEPT_KEYWORDS + per_test + tuple(MARKER_ALIASES)


def check_marker_keywords(kwargs: Mapping[str, Any]) -> None:
    """Raise SettingError for a keyword the ``uoc_concept`` marker does not take (with the closest one)."""
    import difflib

    known = marker_keywords()
    for key, value in kwargs.items():
        if key in known:
            continue
        if key in SESSION_ONLY:
            option = _BY_NAME[key]
            raise SettingError(
                f"uoc_concept marker keyword {key}={value!r}: {key} holds for the whole session and cannot be set "
                f"per test; use {option.cli} on the command line, {option.ini} in the ini file"
                + (f" or {option.env_var}" if option.env else "")
            )
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}={value!r}? " if close else ""
        raise SettingError(f"uoc_concept marker: unknown keyword {key}={value!r}; {hint}"
                           f"known keywords: {', '.join(known)}")


def _marker_value(option: Option, value: Any) -> Any:
    """A marker keyword's value through the option's own parser (lists as comma lists)."""
    if option.name == "seeds" and not isinstance(value, str):
        return _seeds(",".join(str(s) for s in parse_seeds(value)))
    if isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    return option.parse(str(value))


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one session; ``sources`` says where each value came from."""

    original: str | None = "zoo:digits"
    unlearned: str | None = None
    unlearned_kind: str = "auto"
    reference: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    steps: int = 50
    guidance_scale: float = 7.5
    seeds: tuple[int, ...] = tuple(range(32))
    psis: tuple[float, ...] = DEFAULT_PSIS
    batch_size: int = 32
    mix_branches: str = "auto"
    compile: bool = False
    backbone: str = "resnet18"
    backbone_weights: str | None = None
    classifier_recipe: str = "small"
    classifier_size: int | None = None
    anchor: tuple[str, ...] | None = None
    judge: str = "auto"
    rule: str = "calibrated"
    sequential: bool = False
    round_seeds: int = 4
    max_seeds: int | None = None
    accuracy_floor: float = 0.75
    report: str | None = None
    html: str | None = None
    artifacts: str | None = None
    cache_dir: str | None = None
    cache_max_mb: int = 2048
    cache_clear: bool = False
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def explicit(self, name: str) -> bool:
        """True when the user set ``name`` (command line, environment or ini)."""
        return self.sources.get(name, "default") != "default"

    def with_marker(self, **marker: Any) -> Settings:
        """Apply marker keywords where the user did not set the option elsewhere."""
        check_marker_keywords(marker)
        changes: dict[str, Any] = {}
        for key, value in marker.items():
            key = MARKER_ALIASES.get(key, key)
            if key not in _BY_NAME or value is None:
                continue
            try:  # validated even where the command line, environment or ini overrides it
                parsed = _marker_value(_BY_NAME[key], value)
            except SettingError as exc:
                raise SettingError(f"uoc_concept marker keyword {key}={value!r}: {exc}") from None
            if not self.explicit(key):
                changes[key] = parsed
        if not changes:
            return self
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)


def _show_default(option: Option) -> str:
    default = option.default
    if default is None:
        return "none"
    if isinstance(default, tuple):
        return ",".join(str(v) for v in default) if len(default) <= 8 else f"{len(default)} values"
    return str(default)


def resolve_settings(
    cli: Mapping[str, Any], ini: Mapping[str, Any], environ: Mapping[str, str] | None = None,
    *, flag_prefix: str = "--uoc-",
) -> Settings:
    """Merge command line, environment and ini values; raise SettingError on a bad one.

    ``cli`` and ``ini`` map option names to raw values (None when unset);
    ``flag_prefix`` is how errors spell a command-line flag (``uoc audit`` uses ``--``).
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    def named(option: Option, source: str) -> str:
        """How an error names where the value came from: the flag, the variable or the ini key."""
        return {"command line": flag_prefix + option.name.replace("_", "-"),
                "environment": option.env_var, "ini": option.ini}[source]

    for option in OPTIONS:
        raws = [("command line", cli.get(option.name))]
        if option.env:
            raws.append(("environment", environ.get(option.env_var)))
        raws.append(("ini", ini.get(option.name)))
        candidates = [(source, named(option, source), raw) for source, raw in raws]
        chosen = None
        for source, label, raw in candidates:
            if raw is None or raw is False and source != "command line":
                continue
            if isinstance(raw, str) and not raw.strip():
                if source == "environment":  # VAR= unsets a variable, as shells do
                    continue
                raise SettingError(f"{label} ({source}) is empty; give a value, or leave the option out for the "
                                   f"default ({_show_default(option)})")
            if isinstance(raw, bool) and option.parse is _bool:
                if not raw:
                    continue
                parsed = True
            else:
                try:  # every value given is checked, also one that a higher source overrides
                    parsed = option.parse(raw)
                except SettingError as exc:
                    overridden = f" (overridden by {chosen[1]}, but wrong)" if chosen is not None else ""
                    raise SettingError(f"{label} ({source}) = {raw!r}{overridden}: {exc}") from None
            if chosen is None:
                chosen = (source, label)
                values[option.name] = parsed
                sources[option.name] = source
        if chosen is None:
            values[option.name] = option.default
            sources[option.name] = "default"
    if values["max_seeds"] is not None and sources["seeds"] != "default":  # else each marker's seeds are checked
        try:
            check_max_seeds(values["seeds"], values["max_seeds"])
        except SettingError as exc:
            source = sources["max_seeds"]
            raise SettingError(f"{named(_BY_NAME['max_seeds'], source)} ({source}) = {values['max_seeds']}: {exc}") from None
    _check_outputs_apart(values, sources, named)
    unlearned = values.get("unlearned")
    if unlearned and str(unlearned).startswith("zoo:") and values["unlearned_kind"] != "auto":
        source = sources["unlearned_kind"]
        raise SettingError(f"{named(_BY_NAME['unlearned_kind'], source)} ({source}) = {values['unlearned_kind']!r} "
                           f"is for weight files; {unlearned} is a zoo model, loaded as it ships: leave the kind at "
                           "auto for zoo: names")
    return Settings(**values, sources=sources)


def _check_outputs_apart(values: Mapping[str, Any], sources: Mapping[str, str],
                         named: Callable[[Option, str], str]) -> None:
    """Raise SettingError when a report file (JSON, HTML) is the artifacts or cache folder, lies in the cache, or
    both reports are one file."""
    files = [(name, values.get(name)) for name in ("report", "html") if values.get(name)]
    for name, report in files:
        report_path = Path(report).expanduser().resolve()
        for other in ("artifacts", "cache_dir"):
            folder = values.get(other)
            if not folder:
                continue
            folder_path = Path(folder).expanduser().resolve()
            if report_path == folder_path or other == "cache_dir" and folder_path in report_path.parents:
                where = "is" if report_path == folder_path else "lies inside"
                raise SettingError(
                    f"{named(_BY_NAME[name], sources[name])} = {report!r} {where} the folder "
                    f"{named(_BY_NAME[other], sources[other])} = {folder!r}: give the report a path of its own")
    if len(files) == 2 and Path(files[0][1]).expanduser().resolve() == Path(files[1][1]).expanduser().resolve():
        raise SettingError(f"{named(_BY_NAME['report'], sources['report'])} and {named(_BY_NAME['html'], sources['html'])} "
                           f"are the same file {files[0][1]!r}: give each report a path of its own")