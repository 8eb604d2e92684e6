# The tables of this study, regenerated from the committed runs (run from the repository root):
#   bash results/gong_multimnist_label_fraction/tables.sh
# tests/test_results_regenerate.py checks that each file below is what its command writes today.
mtl-bench table results/gong_multimnist_label_fraction/runs --metrics accuracy --out results/gong_multimnist_label_fraction/table.md
mtl-bench table results/gong_multimnist_label_fraction/runs --metrics accuracy --format csv --out results/gong_multimnist_label_fraction/table.csv
