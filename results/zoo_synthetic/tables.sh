# The tables of this study, regenerated from the committed runs (run from the repository root):
#   bash results/zoo_synthetic/tables.sh
# tests/test_results_regenerate.py checks that each file below is what its command writes today.
mtl-bench table results/zoo_synthetic/runs --metrics normalized_loss --out results/zoo_synthetic/table.md
mtl-bench table results/zoo_synthetic/runs --metrics normalized_loss --format csv --out results/zoo_synthetic/table.csv
