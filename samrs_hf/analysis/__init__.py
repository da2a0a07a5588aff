"""Stage 5: metrics, the prompt ablation (Table 1), statistics, overlays."""
