# Bursts of connections: does the broker give memory back once they are gone?
# (docs/reliability.md). Usage:
#   python3 bench/attacks/burst.py PATH/TO/ipcq-broker [CONNECTIONS] [BURSTS]
# Each burst opens CONNECTIONS clients at once; each greets, opens a queue, puts, gets and
# acknowledges one 16 KiB item, and stays until all are open; then all close (SETTLE
# seconds, default 1, before the RSS is read). Prints the broker's
# RSS idle, at the peak of each burst, and a second after each burst with none open.
import os, socket, struct, subprocess, sys, tempfile, time, threading
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f; n >>= 7
        if n: out.append(b | 0x80)
        else: out.append(b); return bytes(out)
def frame(body): return struct.pack('<I', len(body)) + body
def rss(pid):
    for line in open(f'/proc/{pid}/status'):
        if line.startswith('VmRSS:'): return int(line.split()[1])
broker, n, bursts = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4000, int(sys.argv[3]) if len(sys.argv) > 3 else 5
d = tempfile.mkdtemp(); addr = os.path.join(d, 'ipcq.sock')
b = subprocess.Popen([broker, '--addr', addr, '--max-connections', str(n + 16)], stderr=subprocess.PIPE)
for line in b.stderr:
    if b'listening' in line: break
threading.Thread(target=lambda: [None for _ in b.stderr], daemon=True).start()
def read_frame(s, buf):
    while True:
        if len(buf) >= 4:
            ln = struct.unpack('<I', buf[:4])[0]
            if len(buf) >= 4 + ln: return buf[4:4 + ln], buf[4 + ln:]
        chunk = s.recv(1 << 16)
        if not chunk: raise EOFError
        buf += chunk
item = b'x' * 16384
def client():
    s = socket.socket(socket.AF_UNIX); s.connect(addr)
    hello, buf = read_frame(s, b'')
    version = hello[4]  # a one-byte varint
    s.sendall(frame(b'IPCQ' + varint(version) + varint(1 << 24)))
    queue_kind = b'\x00\x00' + (b'\x00' if version >= 2 else b'')
    s.sendall(frame(b'\x00' + varint(1) + b'\x01' + varint(5) + b'burst' + queue_kind))
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
