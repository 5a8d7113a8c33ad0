#!/usr/bin/env bash
# Fetch the weight files the worker loads into CHECKPOINTS_DIR, verified by size and SHA-256.
#
# Usage: scripts/download_models.sh [--size 256|512|all] [--dir DIR] [--restoreformer]
#   --size  which renderer resolution(s) to fetch for (default: all). 256 and 512 share every file except
#           SadTalker_V0.0.2_<size>.safetensors.
#   --dir   target folder (default: $CHECKPOINTS_DIR, else ./checkpoints).
#   --restoreformer  also fetch the OPTIONAL RestoreFormer.pth (enhancer=restoreformer). No SHA-256 or size is
#           published for it: only a third-party MD5 is checked (when md5sum exists). Off by default.
#
# Files already present and verified are skipped. Before fetching the rest, the script checks that the server of
# the first missing file answers at all (any of its URLs); if none does (no network, DNS or proxy failure), it
# stops at once with one message naming the URLs it could not reach and every file still missing (exit 3).
# Each file is written to <name>.part and renamed to <name> only after its size and SHA-256 match the table; a
# .part left by an interrupted run is resumed. Each file is tried up to WEIGHTS_ATTEMPTS times over its URLs
# (official first, then mirrors). On a terminal, curl draws a progress bar per file. Exit status: 0 all verified;
# 1 names every file that failed; 2 usage error or missing tool; 3 no URL could be reached. Needs curl,
# sha256sum, GNU stat and realpath.
#
# Environment:
#   CHECKPOINTS_DIR        target folder (overridden by --dir)
#   WEIGHTS_MANIFEST       table to read (default: weights.tsv beside this script, generated from
#                          sadtalker/weights/table.py). Tests point it at stand-in files.
#   WEIGHTS_BASE_URL       fetch every file as $WEIGHTS_BASE_URL/<name> instead of the table's URLs
#                          (a local mirror, or the tests' loopback server).
#   WEIGHTS_ATTEMPTS       rounds over the URLs per file (default 3)
#   WEIGHTS_RETRY_DELAY_S  pause between rounds (default 5)
#   WEIGHTS_CURL_RETRIES   curl's own --retry count for transient errors: timeouts, DNS failures, refused
#                          connections, HTTP 408/429/5xx (default 3)
#   WEIGHTS_PROGRESS       bar: curl's progress bar; none: quiet; auto (default): bar when stderr is a terminal
set -uo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MANIFEST="${WEIGHTS_MANIFEST:-$SCRIPT_DIR/weights.tsv}"
SIZE="all"
DEST_DIR="${CHECKPOINTS_DIR:-./checkpoints}"
ATTEMPTS="${WEIGHTS_ATTEMPTS:-3}"
RETRY_DELAY_S="${WEIGHTS_RETRY_DELAY_S:-5}"
CURL_RETRIES="${WEIGHTS_CURL_RETRIES:-3}"
PROGRESS="${WEIGHTS_PROGRESS:-auto}"
RESTOREFORMER=0
# The optional RestoreFormer file (sadtalker/weights/table.py: RESTOREFORMER, RESTOREFORMER_MD5).
RF_NAME="RestoreFormer.pth"
RF_URL="https://github.com/TencentARC/GFPGAN/releases/download/v1.3.4/RestoreFormer.pth"
RF_MD5="${RESTOREFORMER_MD5:-eaeeff6c4a1caa1673977cb374e6f699}"

log() { printf 'download_models: %s\n' "$*" >&2; }
usage() { sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --size) [[ $# -ge 2 ]] || usage; SIZE="$2"; shift 2 ;;
    --size=*) SIZE="${1#--size=}"; shift ;;
    --dir) [[ $# -ge 2 ]] || usage; DEST_DIR="$2"; shift 2 ;;
    --dir=*) DEST_DIR="${1#--dir=}"; shift ;;
    --restoreformer) RESTOREFORMER=1; shift ;;
    -h|--help) usage ;;
    *) log "unknown argument: $1"; usage ;;
  esac
done
case "$SIZE" in 256|512|all) ;; *) log "--size must be 256, 512 or all, got '$SIZE'"; exit 2 ;; esac
case "$PROGRESS" in
  auto) if [[ -t 2 ]]; then PROGRESS=bar; else PROGRESS=none; fi ;;
  bar|none) ;;
  *) log "WEIGHTS_PROGRESS must be auto, bar or none, got '$PROGRESS'"; exit 2 ;;
esac
for tool in curl sha256sum stat realpath; do
  command -v "$tool" >/dev/null || { log "$tool is required but not installed"; exit 2; }
done
[[ -r "$MANIFEST" ]] || { log "manifest not found: $MANIFEST"; exit 2; }
[[ "$MANIFEST" == "$SCRIPT_DIR/weights.tsv" ]] || log "using manifest override $MANIFEST"
DEST_ABS="$(realpath -m "$DEST_DIR")"

file_size() { stat -c %s "$1"; }
gigabytes() { awk -v b="$1" 'BEGIN { printf "%.2f GB", b / 1e9 }'; }

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

# urls_of NAME: the URLs to try for NAME, official first (or the one under WEIGHTS_BASE_URL).
urls_of() {
  if [[ -n "${WEIGHTS_BASE_URL:-}" ]]; then
    printf '%s\n' "${WEIGHTS_BASE_URL%/}/$1"
  else
    printf '%s\n' ${URLS[$1]}
  fi
}

# download URL PART SIZE: fetch into PART, resuming a shorter PART left by an earlier try.
download() {
  local url="$1" part="$2" size="$3" rc
  local -a opts=(--fail --location --retry "$CURL_RETRIES" --retry-connrefused
                 --connect-timeout 30 --speed-limit 1024 --speed-time 60 --output "$part")
  if [[ "$PROGRESS" == bar ]]; then opts+=(--progress-bar); else opts+=(--silent --show-error); fi
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

# fetch_one NAME: make DEST_DIR/NAME a verified copy, or fail.
fetch_one() {
  local name="$1" size="${SIZES[$1]}" sha="${SHAS[$1]}" dest="$DEST_DIR/$1" part="$DEST_DIR/$1.part" attempt url
  for ((attempt = 1; attempt <= ATTEMPTS; attempt++)); do
    for url in $(urls_of "$name"); do
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

# reachable NAME: success when any URL of NAME gets an HTTP answer (any status: a HEAD request, no --fail).
# Otherwise print the one "cannot reach" message, naming each URL with curl's error and every missing file.
reachable() {
  local url err rc lines=() total=0 name
  err="$(mktemp)"
  for url in $(urls_of "$1"); do
    curl --silent --show-error --head --location --output /dev/null --retry "$CURL_RETRIES" --retry-connrefused \
         --connect-timeout 30 --max-time 60 "$url" 2>"$err"
    rc=$?
    if [[ $rc -eq 0 ]]; then rm -f "$err"; return 0; fi
    lines+=("  $url: $(tail -n 1 "$err" | tr -d '\r')")
  done
  rm -f "$err"
  local missing=()
  for name in "${TODO[@]}"; do
    [[ " ${UNOFFICIAL[*]} " == *" $name "* ]] || missing+=("$name")
  done
  for name in "${missing[@]}"; do total=$((total + SIZES[$name])); done
  {
    printf 'download_models: cannot reach the weight server (no network?), so nothing was downloaded.\n'
    printf '%s\n' "${lines[@]}"
    printf '  Still missing in %s: %d file(s), %s: %s\n' "$DEST_ABS" "${#missing[@]}" "$(gigabytes "$total")" "${missing[*]}"
    if [[ ${#UNOFFICIAL[@]} -gt 0 ]]; then
      printf '  Present but not the official files (size or SHA-256 differs, e.g. generated test weights): %s\n' \
        "${UNOFFICIAL[*]}"
      printf '  To try the worker on generated weights without the official ones: make demo (see README).\n'
    fi
    printf '  Connect to the internet (or set WEIGHTS_BASE_URL to a reachable mirror) and run this again.\n'
  } >&2
  return 1
}

# Pass 1: which of the selected files are missing or do not verify.
declare -A SIZES SHAS URLS
TODO=()
UNOFFICIAL=()  # present but failing verification: fetched again, named apart when the server is unreachable
count=0
while IFS=$'\t' read -r name size sha sizes urls; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  [[ "$SIZE" == all || "$sizes" == both || "$sizes" == "$SIZE" ]] || continue
  count=$((count + 1))
  SIZES[$name]="$size"; SHAS[$name]="$sha"; URLS[$name]="$urls"
  if [[ -f "$DEST_DIR/$name" ]]; then
    if verify "$DEST_DIR/$name" "$size" "$sha"; then
      log "$name: already present and verified"
      continue
    fi
    log "$name: present but not the official file (its size or SHA-256 differs); fetching the official one"
    UNOFFICIAL+=("$name")
  fi
  TODO+=("$name")
done < "$MANIFEST"

# Pass 2: fetch them, after one check that the network reaches the first one's server.
if [[ ${#TODO[@]} -gt 0 ]]; then
  reachable "${TODO[0]}" || exit 3
  mkdir -p "$DEST_DIR" || { log "cannot create $DEST_DIR"; exit 2; }
  total=0
  for name in "${TODO[@]}"; do total=$((total + SIZES[$name])); done
  log "fetching ${#TODO[@]} of $count file(s), $(gigabytes "$total"), into $DEST_ABS"
fi
failed=()
for name in "${TODO[@]}"; do
  fetch_one "$name" || failed+=("$name")
done

if [[ ${#failed[@]} -gt 0 ]]; then
  log "FAILED ${#failed[@]} of $count file(s): ${failed[*]}"
  exit 1
fi
log "all $count file(s) for --size $SIZE verified in $DEST_DIR"

# fetch_restoreformer: the optional, unverifiable RestoreFormer.pth, checked against the third-party MD5 only.
fetch_restoreformer() {
  local dest="$DEST_DIR/$RF_NAME" part="$DEST_DIR/$RF_NAME.part" url="$RF_URL" got
  [[ -n "${WEIGHTS_BASE_URL:-}" ]] && url="${WEIGHTS_BASE_URL%/}/$RF_NAME"
  log "$RF_NAME: optional and UNVERIFIED (no published SHA-256 or size); fetching $url"
  mkdir -p "$DEST_DIR" || return 1
  rm -f "$part"
  curl --fail --location --retry "$CURL_RETRIES" --retry-connrefused --connect-timeout 30 --silent --show-error \
       --output "$part" "$url" || { rm -f "$part"; return 1; }
  if command -v md5sum >/dev/null; then
    got="$(md5sum "$part" | cut -d' ' -f1)"
    if [[ "$got" != "$RF_MD5" ]]; then
      log "$RF_NAME: md5 $got, expected $RF_MD5 (third-party digest)"
      rm -f "$part"
      return 1
    fi
  else
    log "$RF_NAME: md5sum not installed; not checked at all"
  fi
  mv -f "$part" "$dest" && log "$RF_NAME: fetched ($(file_size "$dest") bytes), md5 as published by a third party"
}
if [[ $RESTOREFORMER -eq 1 ]]; then
  fetch_restoreformer || { log "FAILED the optional $RF_NAME"; exit 1; }
fi
