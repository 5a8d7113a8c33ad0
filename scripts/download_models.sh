#!/usr/bin/env bash
# Fetch the weight files the worker loads into CHECKPOINTS_DIR, verified by size and SHA-256.
#
# Usage: scripts/download_models.sh [--size 256|512|all] [--dir DIR]
#   --size  which renderer resolution(s) to fetch for (default: all). 256 and 512 share every file except
#           SadTalker_V0.0.2_<size>.safetensors.
#   --dir   target folder (default: $CHECKPOINTS_DIR, else ./checkpoints).
#
# Each file is written to <name>.part and renamed to <name> only after its size and SHA-256 match the table.
# Files already present and verified are skipped; a .part left by an interrupted run is resumed. Each file is
# tried up to WEIGHTS_ATTEMPTS times over its URLs (official first, then mirrors). Exit status 1 names every
# file that failed; 2 is a usage error. Needs curl, sha256sum and GNU stat.
#
# Environment:
#   CHECKPOINTS_DIR        target folder (overridden by --dir)
#   WEIGHTS_MANIFEST       table to read (default: weights.tsv beside this script, generated from
#                          sadtalker/weights/table.py). Tests point it at stand-in files.
#   WEIGHTS_BASE_URL       fetch every file as $WEIGHTS_BASE_URL/<name> instead of the table's URLs
#                          (a local mirror, or the tests' loopback server).
#   WEIGHTS_ATTEMPTS       rounds over the URLs per file (default 3)
#   WEIGHTS_RETRY_DELAY_S  pause between rounds (default 5)
#   WEIGHTS_CURL_RETRIES   curl's own --retry count for transient errors: timeouts, HTTP 408/429/5xx (default 3)
set -uo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MANIFEST="${WEIGHTS_MANIFEST:-$SCRIPT_DIR/weights.tsv}"
SIZE="all"
DEST_DIR="${CHECKPOINTS_DIR:-./checkpoints}"
ATTEMPTS="${WEIGHTS_ATTEMPTS:-3}"
RETRY_DELAY_S="${WEIGHTS_RETRY_DELAY_S:-5}"
CURL_RETRIES="${WEIGHTS_CURL_RETRIES:-3}"

log() { printf 'download_models: %s\n' "$*" >&2; }
usage() { sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --size) [[ $# -ge 2 ]] || usage; SIZE="$2"; shift 2 ;;
    --size=*) SIZE="${1#--size=}"; shift ;;
    --dir) [[ $# -ge 2 ]] || usage; DEST_DIR="$2"; shift 2 ;;
    --dir=*) DEST_DIR="${1#--dir=}"; shift ;;
    -h|--help) usage ;;
    *) log "unknown argument: $1"; usage ;;
  esac
done
case "$SIZE" in 256|512|all) ;; *) log "--size must be 256, 512 or all, got '$SIZE'"; exit 2 ;; esac
for tool in curl sha256sum stat; do
  command -v "$tool" >/dev/null || { log "$tool is required but not installed"; exit 2; }
done
[[ -r "$MANIFEST" ]] || { log "manifest not found: $MANIFEST"; exit 2; }
[[ "$MANIFEST" == "$SCRIPT_DIR/weights.tsv" ]] || log "using manifest override $MANIFEST"
mkdir -p "$DEST_DIR" || { log "cannot create $DEST_DIR"; exit 2; }

file_size() { stat -c %s "$1"; }

# verify FILE SIZE SHA256: success when both match; prints the mismatch otherwise.
verify() {
  local file="$1" size="$2" sha="$3" got
  got="$(file_size "$file")"
  if [[ "$got" != "$size" ]]; then
    log "$(basename "$file"): $got bytes, expected $size"
    return 1
  fi
  got="$(sha256sum "$file" | cut -d' ' -f1)"
  if [[ "$got" != "$sha" ]]; then
    log "$(basename "$file"): sha256 $got, expected $sha"
    return 1
  fi
}

# download URL PART SIZE: fetch into PART, resuming a shorter PART left by an earlier try.
download() {
  local url="$1" part="$2" size="$3" rc
  local -a opts=(--fail --location --silent --show-error --retry "$CURL_RETRIES" --retry-connrefused
                 --connect-timeout 30 --speed-limit 1024 --speed-time 60 --output "$part")
  if [[ -s "$part" && "$(file_size "$part")" -lt "$size" ]]; then
    log "resuming $(basename "$part") at $(file_size "$part") bytes"
    curl "${opts[@]}" --continue-at - "$url"
    rc=$?
    # 33: the server ignores byte ranges. Start over rather than append a whole body to a prefix.
    [[ $rc -ne 33 ]] && return $rc
    log "server does not resume; fetching $(basename "$part") from the start"
  fi
  rm -f "$part"
  curl "${opts[@]}" "$url"
}

# fetch_one NAME SIZE SHA256 URLS: make DEST_DIR/NAME a verified copy, or fail.
fetch_one() {
  local name="$1" size="$2" sha="$3" urls="$4" dest="$DEST_DIR/$1" part="$DEST_DIR/$1.part" attempt url
  if [[ -f "$dest" ]]; then
    if verify "$dest" "$size" "$sha"; then
      log "$name: already present and verified"
      return 0
    fi
    log "$name: present but does not verify; fetching it again"
  fi
  [[ -n "${WEIGHTS_BASE_URL:-}" ]] && urls="${WEIGHTS_BASE_URL%/}/$name"
  for ((attempt = 1; attempt <= ATTEMPTS; attempt++)); do
    for url in $urls; do
      log "$name: fetching $url (try $attempt of $ATTEMPTS)"
      if download "$url" "$part" "$size"; then
        if verify "$part" "$size" "$sha"; then
          mv -f "$part" "$dest" && log "$name: verified ($size bytes)" && return 0
        fi
        rm -f "$part"  # complete but wrong: never resume from it
      elif [[ -f "$part" && "$(file_size "$part")" -ge "$size" ]]; then
        rm -f "$part"  # a failed transfer that is already too long cannot be resumed
      fi
    done
    [[ $attempt -lt $ATTEMPTS ]] && sleep "$RETRY_DELAY_S"
  done
  return 1
}

failed=()
count=0
while IFS=$'\t' read -r name size sha sizes urls; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  [[ "$SIZE" == all || "$sizes" == both || "$sizes" == "$SIZE" ]] || continue
  count=$((count + 1))
  fetch_one "$name" "$size" "$sha" "$urls" || failed+=("$name")
done < "$MANIFEST"

if [[ ${#failed[@]} -gt 0 ]]; then
  log "FAILED ${#failed[@]} of $count file(s): ${failed[*]}"
  exit 1
fi
log "all $count file(s) for --size $SIZE verified in $DEST_DIR"
