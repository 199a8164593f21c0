"""Turns the captured fixtures into seed inputs for tests/fuzz/decoder_fuzz.cpp.

One seed per fixture file: a selector byte (protocol version - 1, bit 3 for CopyData frames),
then each message as a big-endian 16-bit length and its bytes. Messages over 64 KiB are cut.
"""
import pathlib
import sys

fixtures, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
count = 0
for path in sorted(fixtures.glob("*/*.hex")):
    version = 2 if path.stem.startswith("stream") else 3 if path.stem.startswith("two_phase") else 1
    selector = version - 1
    if path.parent.name == "stream":
        selector |= 8
    seed = bytearray([selector])
    for line in path.read_text().split():
        msg = bytes.fromhex(line.removeprefix("\\x"))[:65535]
        seed += len(msg).to_bytes(2, "big") + msg
        if len(seed) > 60000:
            break
    (out / f"seed-{path.parent.name}-{path.stem}").write_bytes(bytes(seed))
    count += 1
print(f"fuzz-seeds: {count} seeds")
