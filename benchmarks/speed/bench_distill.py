"""Where a distillation step spends its time, and what the fast paths buy.

    python -m benchmarks.speed.bench_distill [--batch 128] [--repeat 10] [--threads N]
        [--student vt_lite0_imagenet_filter]

Times, on random 14x14 maps of the trunk's 112 channels (the time does not depend on the
values): the teacher's tail labelling one batch of views as a plain contiguous batch (how
``distill`` labelled views before channels-last), through
:func:`vt_explorer.distill.label_views` in float32 (channels-last, CPU chunks of
``TEACHER_CPU_CHUNK``) and in bfloat16; the student's forward + backward + AdamW step in
float32 and bfloat16; and a whole :func:`vt_explorer.distill.distill_step` (views, mixing,
teacher, student) both ways, as views per second; then whole steps with ``--image-share``
(fresh crops of 288-px photos through the trunk, :class:`vt_explorer.distill.ImageCrops`). bfloat16 rows are skipped where the
device has no native bfloat16 (``bf16_supported``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch

from vt_explorer.distill import (
    DistillArgs,
    ImageCrops,
    bf16_supported,
    distill_step,
    kd_loss,
    label_views,
    make_views,
    teacher_model,
)
from vt_explorer.features import folded_trunk
from vt_explorer.model import create_model
from vt_explorer.model.efficientnet import stride16_blocks

ROOT = Path(__file__).resolve().parents[2]


def seconds(fn: Callable[[], object], repeat: int) -> float:
    """Mean wall time of ``fn`` over ``repeat`` calls after one warm-up call."""
    fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128, help="views per step (distill's default)")
    p.add_argument("--repeat", type=int, default=10, help="timed calls per row")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default all)")
    p.add_argument("--student", default="vt_lite0_imagenet_filter", help="student config")
    p.add_argument(
        "--image-shares",
        type=float,
        nargs="*",
        default=[0.25, 1.0],
        help="--image-share values to time (fresh image-space crops through the "
        "trunk, from 288-px photos)",
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    bf16 = bf16_supported(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 112, 14, 14, generator=g).clamp(0, 6)
    plain = teacher_model(device)  # unfolded, as eval's teacher
    folded = teacher_model(device, fold=True)  # what distill labels with
    rows: list[tuple[str, float]] = []

    @torch.no_grad()
    def contiguous_batch() -> None:  # the tail's blocks on a contiguous batch, one pass
        h = x
        for block in folded._blocks[stride16_blocks() :]:
            h = block(h)
        folded._fc(folded.act(folded._bn1(folded._conv_head(h))).mean((2, 3)))

    rows.append(("teacher, one contiguous batch (before)", seconds(contiguous_batch, args.repeat)))
    rows.append(
        ("teacher, label_views float32", seconds(lambda: label_views(folded, x), args.repeat))
    )
    if bf16:
        rows.append(
            (
                "teacher, label_views bfloat16",
                seconds(lambda: label_views(folded, x, bf16=True), args.repeat),
            )
        )
    _, target = label_views(plain, x)

    student = create_model(args.student)
    student.load_pretrained()
    student.train()
    opt = torch.optim.AdamW([q for q in student.parameters() if q.requires_grad], lr=1e-4)

    def student_step(low: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
            logits = student.head(x).logits
        loss = kd_loss(logits.float(), target, 1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    rows.append(("student step float32", seconds(lambda: student_step(False), args.repeat)))
    if bf16:
        rows.append(("student step bfloat16", seconds(lambda: student_step(True), args.repeat)))
    bank = torch.randn(512, 112, 18, 18, generator=g).clamp(0, 6).half()
    hard = torch.full((512,), -1)
    for low in [False, True] if bf16 else [False]:
        run = DistillArgs(data=["-"], out="-", batch_size=args.batch, bf16=low)

        views = make_views(run, folded, bank, hard, 14)

        def whole(run: DistillArgs = run, views=views) -> None:
            distill_step(run, student, folded, opt, views, g)

        name = f"whole distill_step {'bfloat16' if low else 'float32'}"
        rows.append((name, seconds(whole, args.repeat)))
    photos = torch.randint(0, 256, (256, 3, 288, 288), generator=g, dtype=torch.uint8)
    crops = ImageCrops(
        photos, folded_trunk(student), student.cfg.mean, student.cfg.std, 224, bf16=bf16
    )
    for share in args.image_shares:
        run = DistillArgs(data=["-"], out="-", batch_size=args.batch, bf16=bf16, image_share=share)

        views = make_views(run, folded, bank[:256], hard[:256], 14, None, crops)

        def with_images(run: DistillArgs = run, views=views) -> None:
            distill_step(run, student, folded, opt, views, g)

        name = f"whole distill_step {'bfloat16' if bf16 else 'float32'}, --image-share {share}"
        rows.append((name, seconds(with_images, args.repeat)))
    print(f"{args.student}, batch {args.batch}, {torch.get_num_threads()} threads")
    print("| part | seconds per batch | views/s |")
    print("|---|---|---|")
    for name, s in rows:
        print(f"| {name} | {s:.3f} | {args.batch / s:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
