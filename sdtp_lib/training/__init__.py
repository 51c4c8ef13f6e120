"""Training the paper's predictor, in the paper's order (nothing is imported here; import the module you need):

- `data`: instruction samples in both layouts, tokenised with the prompt / response split;
- `saliency`: stage 1, the saliency of every token at the stage layers over a data set, stored and resumable;
- `masked`: the masked simulation of pruning that stage 2 trains through (same budgets as the engine);
- `train`: stage 2, the ranking + MSE + LM losses (`TrainConfig`, `train`);
- `validate`: held-out response loss of any scorer, physical engine and masked simulation side by side;
- `run`: stage 1 + 2 + validation in one resumable run folder (`python -m sdtp_lib train`).
"""
