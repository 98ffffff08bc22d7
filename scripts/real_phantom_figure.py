"""docs/images/phantom_real_vs_ct.png: a real CT slice, a formula phantom slice and a real-anatomy phantom
slice (both phases), same windows.

`PYTHONPATH=. python scripts/real_phantom_figure.py [../shared/data]`
"""
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from PETriageLib.ingest.load import load_series  # noqa: E402
from PETriageLib.phantom import FINDING_CODES  # noqa: E402
from PETriageLib.phantom.real_study import RealOptions, generate_real_studies  # noqa: E402
from PETriageLib.phantom.study import generate_study  # noqa: E402

data = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data") / "real"
real = load_series(data / "covid-ct-md-cap002")
studies = generate_real_studies(data / "cadpe-vessels", "e0485", 2026, options=RealOptions(pe=True, clots=3))
ctpa, plain = studies["ctpa"], studies["non_contrast"]
k = int((ctpa.masks == FINDING_CODES["pe"]).sum(axis=(1, 2)).argmax())
kr = int(real.num_slices * 0.55)
formula = generate_study(2026, contrast="none", pe=False, other=False, slice_thickness=3.0)
kf = int(formula.volume.num_slices * 0.55)
panels = [(real.hu[kr], f"real CT (COVID-CT-MD cap002, slice {kr}, non-contrast)"),
          (formula.volume.hu[kf], f"formula phantom, non-contrast, slice {kf}"),
          (plain.volume.hu[k], f"phantom on CAD-PE e0485, non-contrast, slice {k}"),
          (ctpa.volume.hu[k], "same phantom, CTPA (red: PE mask)")]
fig, axes = plt.subplots(2, 4, figsize=(14, 7.2))
for row, (lo, hi, name) in enumerate(((-160, 240, "L40/W400"), (-1350, 150, "L-600/W1500"))):
    for col, (img, title) in enumerate(panels):
        ax = axes[row, col]
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="bilinear")
        if col == 3:
            ax.contour(ctpa.masks[k] == FINDING_CODES["pe"], levels=[0.5], colors="r", linewidths=1.2)
        ax.set_title(f"{title}\n{name}", fontsize=7)
        ax.axis("off")
fig.tight_layout()
out = Path("docs/images/phantom_real_vs_ct.png")
fig.savefig(out, dpi=60)
from PIL import Image  # noqa: E402

Image.open(out).convert("RGB").quantize(96, method=Image.Quantize.MAXCOVERAGE).save(out, optimize=True)  # grey levels + the red contour: small
print(out, out.stat().st_size, "bytes; findings:", "; ".join(f.describe() for f in ctpa.findings))
print("noise", ctpa.volume.metadata["noise_hu"], "HU; phantom slice", k, "of", ctpa.volume.num_slices)
