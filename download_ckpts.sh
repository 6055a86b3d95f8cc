#!/usr/bin/env bash
# Fetch released checkpoints into download_ckpts/ (skips what is already there).
#   bash download_ckpts.sh [--teachers-only]
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p download_ckpts

fetch() {  # fetch URL DEST
  local url=$1 dest=$2
  if [ -s "$dest" ]; then echo "have $dest"; return 0; fi
  mkdir -p "$(dirname "$dest")"
  echo "downloading $url"
  if command -v curl >/dev/null; then curl -fL --retry 3 -o "$dest.part" "$url"; else wget -O "$dest.part" "$url"; fi
  mv "$dest.part" "$dest"
}

# mdistiller's CIFAR-100 teachers: download_ckpts/cifar_teachers/<name>_vanilla/ckpt_epoch_240.pth
if [ -d download_ckpts/cifar_teachers ] && [ -n "$(ls -A download_ckpts/cifar_teachers 2>/dev/null)" ]; then
  echo "have download_ckpts/cifar_teachers"
else
  fetch https://github.com/megvii-research/mdistiller/releases/download/checkpoints/cifar_teachers.tar \
        download_ckpts/cifar_teachers.tar
  tar -xf download_ckpts/cifar_teachers.tar -C download_ckpts
  rm -f download_ckpts/cifar_teachers.tar
fi
[ "${1:-}" = "--teachers-only" ] && exit 0
# >>> further downloads below <<<

# ---------------------------------------------------------------------------
# WKD (Lv et al. NeurIPS 2024): the released class-to-class cost matrices of
# WKD-L, into the paths the official configs' WKD.COST_MATRIX_PATH use
# (wkd_cost_matrix/<dataset>/<teacher>/<name>.pth, relative to the repo root).
# Regenerate them instead with tools/generate_cost_matrix.py.
# ---------------------------------------------------------------------------
WKD_REPO_URL=${WKD_REPO_URL:-https://github.com/JiamingLv/WKD/raw/main}
for wkd_file in \
    wkd_cost_matrix/cifar100/resnet32x4/linear_cka.pth \
    wkd_cost_matrix/cifar100/wrn_40_2/linear_cka.pth \
    wkd_cost_matrix/imagenet/ResNet34/logit_linear_cka.pth \
    wkd_cost_matrix/imagenet/ResNet50/logit_linear_cka.pth; do
  fetch "$WKD_REPO_URL/$wkd_file" "$wkd_file" || echo "WARNING: could not fetch $wkd_file (make it with tools/generate_cost_matrix.py)"
  # a Git LFS pointer instead of the tensor means the URL served the pointer file
  if [ -s "$wkd_file" ] && head -c 40 "$wkd_file" | grep -q "git-lfs"; then
    echo "WARNING: $wkd_file is a Git LFS pointer, not the matrix; removed (make it with tools/generate_cost_matrix.py)"
    rm -f "$wkd_file"
  fi
done
