"""talr_theory: theory checks, token-difficulty analysis and a TALR training core for domain SFT.

Map from the paper (Lin et al., arXiv 2509.20758) to the package:

- ``talr_theory.theory``   exact tier: code lengths, ΔL identities, tilts, bounds, envelopes, λ_max, sympy.
- ``talr_theory.data``     SFT data (JSONL/CSV, MedCalc-Bench, medcalc-synth), general text, tokenization.
- ``talr_theory.models``   one spec string -> (model, tokenizer): embedded SmolLM2, GGUF, HF folder, hub id.
- ``talr_theory.tokens``   teacher-forced token scanner and the statistics of s (Theorem 3.2's input).
- ``talr_theory.training`` one training core: objectives (CE, TALR, DFT, FLOW), L2, LoRA, WiSE-FT, sweeps.
- ``talr_theory.lab``      synthetic lab, empirical Theorem 3.1/3.2 checks, safe-LR advisor, reproduce.
- ``talr_theory.plotting`` seaborn figures used by the CLI and the notebooks.
"""

__version__ = "0.1.0"
