# The tables of this study, regenerated from the committed runs (run from the repository root):
#   bash results/gradnorm_toy/tables.sh
# tests/test_results_regenerate.py checks that each file below is what its command writes today.
mtl-bench table results/gradnorm_toy/runs --metrics normalized_loss --out results/gradnorm_toy/table.md
mtl-bench table results/gradnorm_toy/runs --metrics normalized_loss --format csv --out results/gradnorm_toy/table.csv
