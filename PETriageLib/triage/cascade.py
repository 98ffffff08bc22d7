"""Two-stage slice cascade on a CTVolume: stage 1 (wnl vs disease) on every slice with lung,
stage 2 (other vs pe) on the slices stage 1 calls diseased (or on all, as an option).

``Cascade.run`` is the batch loop: slices are streamed in batches (crop + window + model), so
memory beyond the volume itself does not grow with the series length; progress and cancel are
checked between batches. Loading (``stages``), devices (``runner``), the series models and the
domain check live beside it; ``build_cascade`` puts them together.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from PETriageLib.ingest.volume import CTVolume
from PETriageLib.preprocess.background import ahead
from PETriageLib.preprocess.contrast_phase import measure_contrast_phase
from PETriageLib.preprocess.lungs import analyse_lungs
from PETriageLib.preprocess.slices import PreprocessConfig, centre_channels, prepare_slices
from PETriageLib.progress import Progress, raise_if_cancelled, report_progress
from PETriageLib.triage.domain import DomainCheck, spread
from PETriageLib.triage.embolus import EmbolusModel, load_embolus_model, nct_verdict
from PETriageLib.triage.eligibility import triage_problem
from PETriageLib.triage.options import CascadeOptions
from PETriageLib.triage.phase_route import decide_pathway
from PETriageLib.triage.result import RunInfo, TriageResult
from PETriageLib.triage.stage_runner import StageRunner
from PETriageLib.triage.series_models import SeriesModels, stack_features
from PETriageLib.triage.stages import Stage, load_stage
from PETriageLib.triage.verdict import SliceRow, label_slice, patient_verdict

if TYPE_CHECKING:  # PETriageLib.models loads torch; triage imports it only where a model is loaded
    from PETriageLib.models.patient_rules import PatientRule

log = logging.getLogger(__name__)


class _Timer:
    """Seconds per step, summed over batches."""

    def __init__(self) -> None:
        self.seconds = {"preprocessing": 0.0, "stage1": 0.0, "stage2": 0.0}

    def __call__(self, step: str, work: Any) -> Any:
        t = time.perf_counter()
        out = work()
        self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - t
        return out



class Cascade:
    """Stage 1 + stage 2 on a runner, their preprocessing, the options and the batch loop."""

    def __init__(self, runner: StageRunner, options: CascadeOptions = CascadeOptions(),
                 series_models: SeriesModels | None = None, embolus_models: "dict[str, EmbolusModel] | None" = None
                 ) -> None:
        self.runner = runner
        # loaded segmentation models by pathway ("ctpa": --seg-model, "nct": --nct-model)
        self.embolus_models = dict(embolus_models or {})
        self.series_models = series_models or SeriesModels()
        sm = self.series_models
        rule = self._patient_rule(options)
        if rule is not None:
            own, run = (rule.threshold_disease, rule.threshold_pe), rule.min_run
        elif sm.refiner is not None:
            own, run = sm.refiner.thresholds, 1
        else:
            own, run = (runner.stage1.threshold, runner.stage2.threshold), 1
        # explicit values win one by one; the rule is named only where it supplies all three, as its
        # validated sensitivity holds only for its own values
        given = [name for name in ("threshold_disease", "threshold_pe", "min_run") if getattr(options, name) is not None]
        if rule is not None and given:
            log.warning("%s given: they replace part of the patient rule %s, whose validation figures then do not "
                        "apply", ", ".join(given), rule.name)
        supplies = rule is not None and not given
        self.options = replace(options, threshold_disease=own[0] if options.threshold_disease is None
                               else options.threshold_disease,
                               threshold_pe=own[1] if options.threshold_pe is None else options.threshold_pe,
                               min_run=run if options.min_run is None else options.min_run,
                               patient_rule=rule.name if supplies else None)
        # the preprocessing each checkpoint was trained with (windows, input size, crop, margin)
        self.config1 = PreprocessConfig.from_dict(runner.stage1.meta)
        self.config2 = PreprocessConfig.from_dict(runner.stage2.meta)

    def _patient_rule(self, options: CascadeOptions) -> "PatientRule | None":
        """The pair's registered patient rule, when asked for and when it applies: a slice refiner
        rescales the probabilities and a patient classifier decides PE itself, so neither uses it."""
        sm = self.series_models
        if options.operating_point != "patient" or sm.refiner is not None or sm.patient is not None:
            return None
        from PETriageLib.models.patient_rules import rule_for_pair

        rule = rule_for_pair(self.runner.stage1.identities(), self.runner.stage2.identities())
        if rule is None:
            log.info("this stage pair has no registered patient rule; the checkpoints' slice operating points apply")
        return rule

    @property
    def stage1(self) -> Stage:
        return self.runner.stage1

    @property
    def stage2(self) -> Stage:
        return self.runner.stage2

    @property
    def device(self) -> Any:
        return self.runner.device

    def stage(self, number: int) -> Stage:
        return self.stage2 if number == 2 else self.stage1

    def config(self, number: int) -> PreprocessConfig:
        return self.config2 if number == 2 else self.config1

    @property
    def shared_preprocessing(self) -> bool:
        """Stage 2 takes stage 1's inputs, or their centre slices when it has less slice context
        (the same crop, windows and size make those channels identical to its own preprocessing)."""
        a, b = self.config1, self.config2
        return b.context <= a.context and replace(a, context=b.context).to_dict() == b.to_dict()

    def run_info(self) -> RunInfo:
        sm = self.series_models
        return RunInfo(refiner=sm.refiner_path, patient_model=sm.patient_path,
                       shared_preprocessing=self.shared_preprocessing, fast_paths=self.runner.fast_paths())

    def run(self, volume: CTVolume, progress: Progress | None = None, cancel: Any = None) -> TriageResult:
        """Triage one series. Raises Cancelled when ``cancel`` becomes set between batches."""
        opts = self.options
        timer = _Timer()
        lungs = timer("preprocessing", lambda: analyse_lungs(volume, progress=progress))
        rows = [SliceRow(index=k, z=float(volume.z_positions[k]), instance_uid=str(volume.instance_uids[k]),
                         has_lung=bool(lungs[k].has_lung), analysable=False) for k in range(volume.num_slices)]
        problem = triage_problem(volume, lungs, opts.min_slices)
        features: dict[int, np.ndarray] = {}
        warnings = list(volume.warnings)
        domain = phase = None
        if problem is None:
            phase = timer("preprocessing", lambda: measure_contrast_phase(volume, lungs))
        route = decide_pathway(opts.phase, phase, "nct" in self.embolus_models)
        if problem is None:
            warnings += [w for w in [route.warning] if w]
            domain_idx = self._domain_slices([r.index for r in rows if r.has_lung])
            kept = self._run_batches(volume, lungs, rows, timer, progress, cancel, features, set(domain_idx))
            domain = self._check_domain(domain_idx, kept, timer)
        if domain is not None and not domain.in_domain:
            if opts.domain_check == "refuse":
                problem = domain.reason()
            else:
                warnings.append(domain.reason())
        sm = self.series_models
        done = [r.index for r in rows if r.index in features]
        if problem is None and sm.refiner is not None and done:
            self._refine(rows, done, sm.refine(stack_features(done, features)))
        p_patient = None
        if problem is None and sm.patient is not None and done:
            p_patient = sm.patient_probability(stack_features(done, features))
        verdict = patient_verdict(rows, opts.threshold_disease, opts.threshold_pe, opts.min_run,
                                  not_analysable_reason=problem, patient_probability=p_patient,
                                  patient_threshold=None if p_patient is None else sm.patient.threshold)
        embolus = None
        seg = self.embolus_models.get(route.used)
        if problem is None and seg is not None:
            embolus = timer("segmentation", lambda: seg.segment(volume))
            if route.used == "nct":
                verdict = nct_verdict(verdict, embolus)
        return TriageResult(rows=rows, verdict=verdict, volume=volume, lungs=lungs,
                            models=[self.stage1.info(), self.stage2.info()], options=opts, run=self.run_info(),
                            timings=dict(timer.seconds), device=str(self.device), warnings=warnings, domain=domain,
                            contrast_phase=phase, phase=route, embolus=embolus)

    def _domain_slices(self, analysed: list[int]) -> list[int]:
        """The slices the domain check scores: up to MAX_SLICES analysed ones spread over the
        series; none when it is off or the checkpoint has no domain statistics."""
        if self.options.domain_check == "off" or self.stage1.domain is None:
            return []
        return spread(analysed)

    def _check_domain(self, idx: list[int], images: dict[int, np.ndarray], timer: _Timer) -> DomainCheck | None:
        """Stage 1's domain check on the ``idx`` slices, from their inputs kept by the batch loop
        (the same preprocessing, not done again); None when there is nothing to check."""
        stats = self.stage1.domain
        if not idx:
            return None

        def score() -> DomainCheck:
            feats = self.runner.pooled(self.stage1, np.stack([images[k] for k in idx]))
            return DomainCheck(stats.series_score(feats), stats.threshold, stats.quantile, len(idx), self.stage1.name)

        return timer("domain_check", score)

    def _refine(self, rows: list[SliceRow], done: list[int], refined: np.ndarray) -> None:
        """Replace the analysed rows' probabilities by the refiner's, and label them again."""
        opts = self.options
        for k, (p1, p2) in zip(done, refined):
            r = rows[k]
            r.p_disease = float(p1)
            r.p_pe = float(p2) if opts.all_slices or p1 >= opts.threshold_disease else None
            r.label = label_slice(r.p_disease, r.p_pe, opts.threshold_disease, opts.threshold_pe)

    def _stage2_images(self, volume: CTVolume, lungs: list, idx: list[int], images1: np.ndarray,
                       timer: _Timer) -> np.ndarray:
        """Stage 2's inputs for slices idx, from stage 1's when the preprocessing is shared."""
        if not self.shared_preprocessing:
            return timer("preprocessing", lambda: prepare_slices(volume, idx, self.config2, lungs=lungs).images)
        if self.config2.context < self.config1.context:
            return centre_channels(images1, len(self.config1.windows), self.config1.context, self.config2.context)
        return images1

    def _scores(self, volume: CTVolume, lungs: list, idx: list[int], images1: np.ndarray, timer: _Timer,
                features: dict[int, np.ndarray]) -> "tuple[np.ndarray, np.ndarray]":
        """(p_disease, p_pe with NaN where stage 2 did not run) of one batch."""
        opts, runner, kind = self.options, self.runner, self.series_models.features
        if kind is not None:  # series models: both stages on every slice, with their features
            images2 = self._stage2_images(volume, lungs, idx, images1, timer)
            f1 = timer("stage1", lambda: runner.features(self.stage1, images1, kind))
            f2 = timer("stage2", lambda: runner.features(self.stage2, images2, kind))
            features.update(zip(idx, np.concatenate([f1, f2], axis=1)))
            p1, p2_all = (1 / (1 + np.exp(-f[:, 0].astype(np.float64))) for f in (f1, f2))
            # the rows keep the cascade's meaning: p_pe only where stage 1 passes
            return p1, np.where(opts.all_slices | (p1 >= opts.threshold_disease), p2_all, np.nan)
        p1 = timer("stage1", lambda: runner.probabilities(self.stage1, images1))
        sel = [i for i, p in enumerate(p1) if opts.all_slices or p >= opts.threshold_disease]
        p2 = np.full(len(idx), np.nan)
        if sel:
            images2 = self._stage2_images(volume, lungs, [idx[i] for i in sel], images1[sel], timer)
            p2[sel] = timer("stage2", lambda: runner.probabilities(self.stage2, images2))
        return p1, p2

    def _run_batches(self, volume: CTVolume, lungs: list, rows: list[SliceRow], timer: _Timer,
                     progress: Progress | None, cancel: Any, features: dict[int, np.ndarray],
                     keep: "set[int] | None" = None) -> dict[int, np.ndarray]:
        """Stage 1 (+ stage 2) batch by batch; the next batch's inputs are prepared in a background
        thread meanwhile (one batch ahead: memory bounded). Returns stage 1's inputs of the slices
        in ``keep`` (for the domain check, so that it does not prepare them again)."""
        opts = self.options
        todo = [r.index for r in rows if r.has_lung]
        total, step = len(todo), opts.batch_size
        batches = [todo[start:start + step] for start in range(0, total, step)]
        kept: dict[int, np.ndarray] = {}
        report_progress(progress, 0, total, "stage 1")
        inputs = ahead(lambda idx: prepare_slices(volume, idx, self.config1, lungs=lungs).images, batches,
                       depth=1, cancel=cancel)
        try:
            for b, idx in enumerate(batches):
                start = b * step
                raise_if_cancelled(cancel, "triage", start, total)
                images1 = timer("preprocessing", lambda: next(inputs, None))
                if images1 is None:  # the producer stopped first: it saw the cancel
                    raise_if_cancelled(cancel, "triage", start, total)
                    raise RuntimeError("background preprocessing stopped before the last batch")
                kept.update((k, images1[i].copy()) for i, k in enumerate(idx) if keep and k in keep)
                p1, p2 = self._scores(volume, lungs, idx, images1, timer, features)
                for i, k in enumerate(idx):
                    r = rows[k]
                    r.analysable = True
                    r.p_disease = float(p1[i])
                    r.p_pe = None if np.isnan(p2[i]) else float(p2[i])
                    r.label = label_slice(r.p_disease, r.p_pe, opts.threshold_disease, opts.threshold_pe)
                report_progress(progress, min(start + step, total), total, "stage 1 + stage 2")
        finally:
            inputs.close()
            timer.seconds["preprocessing_ahead"] = timer.seconds.get("preprocessing_ahead", 0.0) + inputs.seconds
        return kept


def build_cascade(stage1: "Stage | str | Path", stage2: "Stage | str | Path", device: str = "auto",
                  patient_model: "str | Path | None" = None, refiner: "str | Path | None" = None,
                  threshold_disease: float | None = None, threshold_pe: float | None = None,
                  **options: Any) -> Cascade:
    """A cascade from two loaded stages, model names (Resources/models.json) or checkpoint paths.

    ``refiner`` / ``patient_model``: series models for these stages (files or registered names).
    Thresholds default to the refiner's when there is one, else to each checkpoint's own.
    Other keywords are ``CascadeOptions`` fields (min_run, all_slices, batch_size, inference, phase,
    seg_model, nct_model, ...); the segmentation checkpoints are loaded here.
    """
    opts = CascadeOptions(threshold_disease=threshold_disease, threshold_pe=threshold_pe, **options)  # checked first
    s1 = stage1 if isinstance(stage1, Stage) else load_stage(1, stage1)
    s2 = stage2 if isinstance(stage2, Stage) else load_stage(2, stage2)
    series = SeriesModels.load(refiner, patient_model, s1, s2)
    runner = StageRunner(s1, s2, device=device, inference=opts.inference, batch_size=opts.batch_size,
                         engine=opts.engine)
    embolus = {pathway: load_embolus_model(spec, pathway, runner.device)
               for pathway, spec in (("ctpa", opts.seg_model), ("nct", opts.nct_model)) if spec is not None}
    return Cascade(runner, opts, series, embolus)
