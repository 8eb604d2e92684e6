# The tables of this study, regenerated from the committed runs (run from the repository root):
#   bash results/zoo_multimnist/tables.sh
# tests/test_results_regenerate.py checks that each file below is what its command writes today.
mtl-bench table results/zoo_multimnist/runs --metrics accuracy --bar accuracy=90 --out results/zoo_multimnist/table.md
mtl-bench table results/zoo_multimnist/runs --metrics accuracy --bar accuracy=90 --format csv --out results/zoo_multimnist/table.csv
