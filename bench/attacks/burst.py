# Bursts of connections: does the broker give memory back once they are gone?
# (docs/reliability.md). Usage:
#   python3 bench/attacks/burst.py PATH/TO/ipcq-broker [CONNECTIONS] [BURSTS]
# Each burst opens CONNECTIONS clients at once; each greets, opens a queue, puts, gets and
# acknowledges one 16 KiB item, and stays until all are open; then all close (SETTLE
# seconds, default 1, before the RSS is read). Prints the broker's
# RSS idle, at the peak of each burst, and a second after each burst with none open.
import os, sys, time
from wire import varint, frame, rss, start_broker, read_frame, connect, queue_kind
broker, n, bursts = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4000, int(sys.argv[3]) if len(sys.argv) > 3 else 5
b, addr = start_broker(broker, '--max-connections', str(n + 16))
item = b'x' * 16384
def client():
    s, version, buf = connect(addr)
    s.sendall(frame(b'\x00' + varint(1) + b'\x01' + varint(5) + b'burst' + queue_kind(version)))
    _, buf = read_frame(s, buf)
    # Put (handle 0, no wait, no credits) the item, then get it (handle 0, no wait).
    s.sendall(frame(b'\x00' + varint(2) + b'\x02\x00\x01\x00' + item))
    _, buf = read_frame(s, buf)
    s.sendall(frame(b'\x00' + varint(3) + b'\x04\x00\x01'))
    reply, buf = read_frame(s, buf)
    # Reply { id: 3, Item { tag, .. } }: acknowledge the tag, so the item is taken for good.
    assert reply[0] == 0 and reply[1] == 3 and reply[2] == 3, reply[:8]
    tag, shift, at = 0, 0, 3
    while True:
        byte = reply[at]; at += 1
        tag |= (byte & 0x7f) << shift; shift += 7
        if byte < 0x80: break
    s.sendall(frame(b'\x01' + varint(tag) + varint(1)))
    return s
print(f'{broker}: idle RSS {rss(b.pid)} KiB')
for burst in range(bursts):
    socks = [client() for _ in range(n)]
    peak = rss(b.pid)
    for s in socks: s.close()
    time.sleep(float(os.environ.get("SETTLE", "1")))
    print(f'burst {burst + 1}: {n} connections, RSS at peak {peak} KiB, after {rss(b.pid)} KiB')
b.kill()
