#!/usr/bin/env bash
# CAPI -> RotNet on wallpaper crops, CAPI body vs random body, two heads; run from the repository root:
#   bash examples/rotnet_experiment/run.sh [work-dir (default /tmp/rotexp)]
# Needs `pip install -e .` and `apt-get install -y mate-backgrounds plasma-workspace-wallpapers`.
set -euo pipefail
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # tiny networks on a shared 2-core CPU: one thread is fastest
EX=examples/rotnet_experiment
W="${1:-/tmp/rotexp}"
TRAIN="$W/imgs/train"
HELDOUT="$W/imgs/heldout"

python "$EX/prep.py" --out "$W/imgs"
roost train capi -c "$EX/capi.toml" --data-path "$TRAIN" --out-dir "$W/capi" --overwrite
CAPI="$W/capi/rope_vit_reg4_b14_avg_capi_40.pt"  # the teacher encoder after the last epoch

for head in avg ap; do
  roost train rotnet -c "$EX/rotnet_$head.toml" --data-path "$TRAIN" --val-path "$HELDOUT" --init "$CAPI" \
    --out-dir "$W/rot_capi_$head" --overwrite
  roost train rotnet -c "$EX/rotnet_$head.toml" --data-path "$TRAIN" --val-path "$HELDOUT" --out-dir "$W/rot_random_$head" --overwrite
done
python "$EX/eval_rot.py" "$W"/rot_*_avg/*_rotnet_40.pt "$W"/rot_*_ap/*_rotnet_60.pt "$HELDOUT"
