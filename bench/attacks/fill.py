# How much memory a broker with default limits takes when its byte budget is full
# (docs/broker.md). Usage:
#   python3 bench/attacks/fill.py PATH/TO/ipcq-broker ITEM_BYTES
# Fills queue after queue (each up to --max-queue-bytes, 256 MiB by default) with items of
# ITEM_BYTES until the broker-wide budget (1 GiB by default) is full, then prints the
# broker's RSS and what it counts as used.
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
broker, size = sys.argv[1], int(sys.argv[2])
d = tempfile.mkdtemp(); addr = os.path.join(d, 'ipcq.sock')
b = subprocess.Popen([broker, '--addr', addr], stderr=subprocess.PIPE)
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
def connect():
    s = socket.socket(socket.AF_UNIX); s.connect(addr)
    hello, buf = read_frame(s, b'')
    s.sendall(frame(b'IPCQ' + varint(hello[4]) + varint(1 << 24)))
    return s, buf
per_frame = max(1, min(60000, (8 << 20) // (size + 8)))
item = b'x' * size
idle = rss(b.pid)
held = []
queue = 0
full = False
while not full:
    s, buf = connect(); held.append(s)
    name = b'fill%d' % queue
    s.sendall(frame(b'\x00\x01\x01' + varint(len(name)) + name + b'\x00\x00\x00'))
    _, buf = read_frame(s, buf)
    request = 2
    while True:
        lens = varint(per_frame) + varint(size) * per_frame
        s.sendall(frame(b'\x00' + varint(request) + b'\x03\x00' + lens + b'\x00' + item * per_frame))
        request += 1
        s.settimeout(2)
        try:
            _, buf = read_frame(s, buf)
        except socket.timeout:
            # Parked for room: this queue is full. If a fresh queue is full at once, so is
            # the broker.
            full = request == 3
            break
    queue += 1
time.sleep(1)
print(f'{broker}: items of {size} bytes in {queue} queues; RSS idle {idle} KiB, full {rss(b.pid)} KiB')
b.kill()
