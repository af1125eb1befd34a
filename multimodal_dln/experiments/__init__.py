"""The experiments wing: simulations on the toy data, sweeps, figures and paper reproductions.

It imports the library (`multimodal_dln`) and is never imported by it. Modules:

- `settings`: checks of toy settings, grids and seeds (errors name the caller's parameters);
- `summary`: summaries and text tables of rows (no matplotlib); `sweep_report`: the summary
  table and figure of a sweep's DataFrame (`mdln sweep`; the sweeps themselves are the
  library's `multimodal_dln.sweeps`);
- `point`: one toy configuration for N seeds (`mdln simulate`); `run`: the `mdln run`
  experiment;
- `figures` and `trajectory_plot`: figures that take rows (time ratio, misattribution) or one
  run (trajectory);
- `zhang2024/` and `wu2022/`: the papers' figure families, each with a registry.

Batches of members (toy statistics, random covariances, supplied data, networks) come from
the library's sweep engine (`multimodal_dln.sweeps`: `run`, or `inputs` for entries that
integrate themselves; docs/sweeps.md), the one batch builder with one seed policy. Shared
infrastructure (private modules, documented in their docstrings; JSON / CSV I/O is the core's
`multimodal_dln._io`):

- `_plotting`: figures without global matplotlib state, `savefig`;
- `_style`: the one figure style (colours, value-keyed colours of swept quantities, marks,
  the gradient-flow time axis, legends that show every mark).
"""
