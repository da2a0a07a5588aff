"""``samrs build``: a detection source in, the SAMRS layout (see :mod:`samrs_hf.build.layout`) out.

The pipeline per source image: read (``sources.readers``) -> cut (``sources.tiling``) -> prompts
(``sam.prompts``) -> SAM (``sam.engine``) -> ``images/``, ``gray/``, ``color/``, ``ins/`` files. What makes
it a *build* rather than a loop lives in this package:

* **presets** fixing the paper's choices (SOTA / SIOR / FAST) and ``custom`` (:mod:`.presets`);
* **refusal**: the options that shape the outputs (the model's weights included, by hash) are
  fingerprinted (:mod:`.config`); an out dir started with other options is refused unless
  ``--overwrite``, which deletes only files a samrs build wrote; one build holds ``--out`` at a time
  (:mod:`.outdir`);
* **distribution**: source image ``i`` (reader order, after ``--limit``) is labelled by Accelerate
  process ``i % num_processes``; each output depends on its own image only, so the files do not
  depend on the number of processes;
* **resume**: every file is written atomically and ``ins/<name>.json`` last (:mod:`.writer`), so its
  presence marks a finished image; a rerun skips those and rewrites the rest byte for byte;
* **overlap**: ``--num-workers`` threads decode, cut and make prompts ahead of SAM, SAM runs in
  the main thread (masks become COCO RLE runs and the gray map on its device), and writer
  threads encode PNGs and write; the processes' tallies merge into ``build.json`` (:mod:`.report`).

Determinism: with ``--image-batch-size 1`` (the default) a patch's files depend on the patch only.
On CUDA a larger image batch lets the kernels (and so the last bits of the embeddings) depend on
which patches share a batch, which differs after a resume or with another process count.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

from ..common.prefetch import prefetch_map
from ..sources.classes import IGNORE_INDEX
from ..sources.imageio import CorruptImageError
from ..sources.records import CORRUPT_IMAGE, SIZE_MISMATCH, Problem, Report, SourceError, SourceImage
from ..sources.tiling import load_patches, plan_patches, unassigned_objects
from ..sam.options import slow_dtype_warning
from .config import BuildConfig, BuildPlan, build_device_type, resolve
from .layout import INS, REPORT, json_bytes
from .outdir import PARTS_DIR, check_out_dir, claim_out_dir, prepare_out_dir, write_file
from .report import OBJECT_IN_NO_WINDOW, NothingBuilt, RunContext, Tally, merge_report, nothing_built_reason
from .writer import PatchItem, PatchWriter, PreparedImage, color_lut, default_writer_threads


logger = logging.getLogger(__name__)


def _wants_cpu(requested: str | None) -> bool:
    """CPU processes (gloo): asked for, or a multi-process launch on a machine without CUDA.

    ``accelerate launch --cpu`` starts several processes only through mpirun; ``accelerate launch
    --multi_gpu --num_processes N`` (torchrun) on a CPU-only machine lands here instead.
    """
    import torch

    if requested is not None:
        return str(requested).startswith("cpu")
    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def _pick_device(requested: str | None, state):
    import torch

    if requested is None:
        return state.device
    dev = torch.device(requested)
    if dev.index is None and dev.type == state.device.type and dev.type != "cpu":
        return state.device  # "cuda" under accelerate launch: this process's own GPU
    return dev


def run_build(config: BuildConfig) -> dict:
    """Run (or resume) a build; returns the ``build.json`` dict on the main process.

    Every process of an ``accelerate launch`` calls this with the same config.
    """
    from accelerate import PartialState

    from ..sources.readers import open_source

    t_start = time.perf_counter()
    plan = resolve(config)
    out = Path(config.out).expanduser().resolve()
    state = PartialState(cpu=_wants_cpu(config.device))
    slow = slow_dtype_warning(plan.dtype, build_device_type(config.device))
    if slow and state.is_main_process:
        logger.warning(slow)
    check_out_dir(out, plan, config.overwrite)  # every process, read-only: refuses before the source is listed
    source = open_source(plan.format, plan.source, strict=config.strict, splits=plan.splits,
                         images_dir=plan.images_dir)
    len(source)  # lists the source now: a wrong layout or split fails before SAM loads and --out is touched
    table = source.class_table
    if len(table) > IGNORE_INDEX:
        raise SourceError(f"{plan.source}: {len(table)} classes do not fit uint8 gray maps (at most 255)")
    with claim_out_dir(out, plan, config.overwrite, state) as mode:  # held until the last file is written
        report = _BuildRun(config, plan, out, state, source, t_start).run(mode)
    images = report["counts"]["source_images"] + source.skipped_images if report else 0  # the reader's skips too
    if images and report["counts"]["patches_written"] == 0 and config.limit != 0:
        raise NothingBuilt(nothing_built_reason(report, images, out))
    return report


class _BuildRun:
    """One process's share of a build into a claimed ``out``: load SAM, label its images, report."""

    def __init__(self, config: BuildConfig, plan: BuildPlan, out: Path, state, source, t_start: float):
        self.config, self.plan, self.out, self.state, self.source = config, plan, out, state, source
        self.rank, self.world = state.process_index, state.num_processes
        self.t_start = t_start
        self.tally = Tally(per_class=[0] * len(source.class_table))
        self.label_s = 0.0

    def run(self, mode: str) -> dict:
        """The report on the main process, else ``{}``."""
        t = time.perf_counter()
        labeler, info, device = self._load_model()
        self.prompt_frame = labeler.prompt_frame()  # mask prompts in the model family's input frame
        model_load_s = time.perf_counter() - t
        self.state.wait_for_everyone()
        if self.state.is_main_process:
            prepare_out_dir(self.out, self.plan, mode)
        self.state.wait_for_everyone()
        writer = PatchWriter(self.out, color_lut(self.source.class_table), self.plan.tiling is None, self.plan.pkl,
                             self.config.writer_threads or default_writer_threads(self.world))
        self._label_all(labeler, writer)
        self.tally.empty_masks = writer.empty_masks
        self.tally.timings = {
            "total_s": round(time.perf_counter() - self.t_start, 3),
            "model_load_s": round(model_load_s, 3),
            "label_s": round(self.label_s, 3),
            "write_wait_s": round(writer.wait_s, 3),
        }
        return self._report(RunContext(self.plan, self.config, self.source, info, device, self.world, self.t_start))

    def _load_model(self):
        from ..sam.engine import SamLabeler
        from ..sam.loading import load_sam
        from ..sam.options import parse_dtype

        device = _pick_device(self.config.device, self.state)
        dtype = parse_dtype(self.plan.dtype)
        model, info = load_sam(self.plan.model, device=device, dtype=dtype, attn_implementation=self.config.attn)
        labeler = SamLabeler(model, device=device, dtype=dtype, image_batch_size=self.config.image_batch_size,
                             max_masks_per_chunk=self.config.max_masks_per_chunk, compile=self.config.compile)
        return labeler, info, device

    def _owned(self) -> Iterator[tuple[int, SourceImage]]:
        """This process's source images (``i % world == rank``), counting every image up to ``--limit``."""
        for index, image in enumerate(self.source.images()):
            if self.config.limit is not None and index >= self.config.limit:
                return
            self.tally.source_images += 1
            if index % self.world == self.rank:
                yield index, image

    def _prepare(self, arg) -> PreparedImage:
        """Plan, skip finished patches, decode the rest (in a worker thread, ahead of SAM)."""
        index, image = arg
        local = Report(strict=self.config.strict)
        patches = plan_patches(image, self.plan.tiling)
        for obj in unassigned_objects(image, patches):
            # By design of the tiling, not bad input: counted, but no error under --strict.
            local.problems.append(Problem(OBJECT_IN_NO_WINDOW, obj.where or image.image_id,
                                          f"{obj.category} object is below the iof rule in every window"))
        finished = [(self.out / INS / f"{p.name}.json").exists() for p in patches]
        todo = [p for p, f in zip(patches, finished) if not f]
        prep = PreparedImage(index, image, patches, [p for p, f in zip(patches, finished) if f], local.problems)
        if todo:
            stream = load_patches(image, todo)
            try:
                first = next(stream)  # the decode: done here, ahead of SAM
            except SourceError as exc:
                kind = CORRUPT_IMAGE if isinstance(exc, CorruptImageError) else SIZE_MISMATCH
                local.skip(kind, self.source.rel(image.image_path), str(exc).split(": ", 1)[-1])
                prep.failed = True
                return prep
            prep.items = _items(index, first, stream, self.plan.prompt, self.prompt_frame)
        return prep

    def _count(self, prep: PreparedImage) -> None:
        tally = self.tally
        tally.problems.extend([prep.index, p.to_dict()] for p in prep.problems)
        counted = prep.done if prep.failed else prep.patches
        for p in counted:
            for o in p.objects:
                tally.per_class[o.label] += 1
            tally.objects += len(p.objects)
        tally.patches_written += len(counted)
        tally.patches_resumed += len(prep.done)
        tally.images_written += bool(counted)

    def _label_all(self, labeler, writer: PatchWriter) -> None:
        from tqdm.auto import tqdm

        total = len(self.source) if self.config.limit is None else min(len(self.source), self.config.limit)
        bar = tqdm(total=-(-max(0, total - self.rank) // self.world), unit="img",
                   desc=f"samrs build {self.plan.preset}", dynamic_ncols=True,
                   disable=not (self.state.is_main_process and self.config.progress))
        prepared = prefetch_map(self._prepare, self._owned(), self.config.num_workers)
        batch: list[PatchItem] = []
        ok = False
        try:
            for prep in prepared:
                self._count(prep)
                for item in prep.items:
                    batch.append(item)
                    if len(batch) >= self.config.image_batch_size:
                        self._flush(labeler, writer, batch)
                bar.update(1)
                bar.set_postfix(patches=self.tally.patches_written, refresh=False)
            if batch:
                self._flush(labeler, writer, batch)
            writer.finish()
            ok = True
        finally:
            prepared.close()
            if not ok:
                writer.abort()
            bar.close()

    def _flush(self, labeler, writer: PatchWriter, batch: list[PatchItem]) -> None:
        t0 = time.perf_counter()
        # Masks stay on the device: RLE runs and the painted gray map (annotation order, the
        # last mask wins, 255 elsewhere) are what comes back.
        results = labeler.label([b.pixels for b in batch], [b.prompts for b in batch], output="rle",
                                labels=[[o.label for o in b.patch.objects] for b in batch])
        self.label_s += time.perf_counter() - t0
        for item, res in zip(batch, results):
            writer.submit(item, res)
        batch.clear()

    def _report(self, context: RunContext) -> dict:
        """Each process writes its tally; the main process merges them into ``build.json``."""
        parts_dir = self.out / PARTS_DIR
        write_file(parts_dir / f"part-{self.rank:05d}-of-{self.world:05d}.json", json_bytes(asdict(self.tally)))
        self.state.wait_for_everyone()
        if not self.state.is_main_process:
            return {}
        parts = [json.loads((parts_dir / f"part-{r:05d}-of-{self.world:05d}.json").read_text())
                 for r in range(self.world)]
        in_folder = sum(1 for _ in (self.out / INS).glob("*.json"))
        report = merge_report(context, parts, self.tally.source_images, in_folder)
        write_file(self.out / REPORT, json_bytes(report))
        shutil.rmtree(parts_dir, ignore_errors=True)
        return report


def _items(index: int, first, stream, prompt: str, frame: dict) -> Iterator[PatchItem]:
    from ..sam.prompts import make_prompts

    for patch, pixels in itertools.chain([first], stream):
        yield PatchItem(index, patch, pixels, make_prompts(prompt, patch.objects, pixels.shape[:2], **frame))
