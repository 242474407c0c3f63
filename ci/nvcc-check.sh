#!/usr/bin/env bash
# Compile every kernels/*.cu (sampler, poly, klz, ...) for sm_80 and sm_90 (cubin, ptxas -v) and print
# registers / stack / spills per kernel. Fails on any compile error.
# Usage: ci/nvcc-check.sh [OUTDIR]   (cubins and logs go to OUTDIR, default a temp dir)
# The templates are instantiated for the check with -DFASTPOLY_NVCC_CHECK (the
# anchor 7-40-40-1 shapes and the generic kernels); the backend instantiates
# others at run time through NVRTC.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kdir="${FASTPOLY_KERNEL_DIR:-$here/kernels}"
NVCC="${NVCC:-nvcc}"
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
command -v "$NVCC" >/dev/null 2>&1 || { echo "nvcc-check: $NVCC not found" >&2; exit 127; }
flags=(-std=c++17 -fmad=false -ftz=false -prec-div=true -prec-sqrt=true -DFASTPOLY_NVCC_CHECK -I"$kdir")
status=0
shopt -s nullglob
files=("$kdir"/*.cu)
[ ${#files[@]} -gt 0 ] || { echo "nvcc-check: no .cu files in $kdir" >&2; exit 1; }
for f in "${files[@]}"; do
  base="$(basename "$f" .cu)"
  for arch in sm_80 sm_90; do
    log="$out/$base.$arch.ptxas.log"
    if "$NVCC" "${flags[@]}" -arch="$arch" -cubin -Xptxas -v "$f" -o "$out/$base.$arch.cubin" >"$log" 2>&1; then
      echo "== $base.cu $arch: ok"
    else
      echo "== $base.cu $arch: FAILED"; cat "$log"; status=1; continue
    fi
    # one line per kernel: name, registers, stack frame, spill stores/loads; then one per device function
    # that is not inlined (its own frame and spills; its registers count in its kernel's)
    awk '
      /Compiling entry function/ { match($0, /'"'"'[^'"'"']+'"'"'/); fn = substr($0, RSTART+1, RLENGTH-2) }
      /Function properties for/ { cur = $NF }
      /bytes stack frame/ { st = $1; ss = $5; sl = $9
                            if (cur != fn) printf "     + %-88s (device function) stack=%-5s spill_st=%-5s spill_ld=%s\n", cur, st, ss, sl }
      /Used [0-9]+ registers/ { for (i = 1; i <= NF; ++i) if ($i == "Used") r = $(i+1);
                                 printf "   %-90s regs=%-4s stack=%-5s spill_st=%-5s spill_ld=%s\n", fn, r, st, ss, sl }
    ' "$log"
    if grep -qi "error" "$log"; then status=1; fi
  done
done
exit $status
