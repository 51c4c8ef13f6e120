"""The notebook workspace (nothing is imported here; import the module you need):

- `pipeline`: the numbered notebooks run headlessly by papermill into run folders (profiles, resume);
- `explorer`: the saliency explorer widget (tokens x stages, kept / dropped);
- `plots`: latency, saliency-sparsity and training-curve figures;
- notebook 08: `sources` (the result files it reads, or why not), `frontier` (quality vs speed, matched),
  `paper_figures` (ablations, H2O, frontier), `paper` (the paper's numbers), `paper_tables` (its tables
  beside ours), `report` (final_summary.md),
  `paper_run` (draw everything, write the summary).
"""
