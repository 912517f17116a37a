# Attack: clients that never read their answers (docs/reliability.md). Usage:
#   python3 bench/attacks/unread.py PATH/TO/ipcq-broker
import os, socket, struct, subprocess, sys, tempfile, time, threading
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f; n >>= 7
        if n: out.append(b | 0x80)
        else: out.append(b); return bytes(out)
def frame(body): return struct.pack('<I', len(body)) + body
def req(i, op): return frame(b'\x00' + varint(i) + op)
def rss(pid):
    for line in open(f'/proc/{pid}/status'):
        if line.startswith('VmRSS:'): return int(line.split()[1])
d = tempfile.mkdtemp(); addr = os.path.join(d, 'ipcq.sock')
b = subprocess.Popen([sys.argv[1], '--addr', addr], stderr=subprocess.PIPE)
for line in b.stderr:
    if b'listening' in line: break
threading.Thread(target=lambda: [None for _ in b.stderr], daemon=True).start()
version = None
def conn():
    # The broker greets first: answer in its protocol version (1 for the builds before
    # the hardening, 2 after), so that one script measures both.
    global version
    s = socket.socket(socket.AF_UNIX); s.connect(addr)
    hello = s.recv(64); version = hello[8]
    s.sendall(frame(b'IPCQ' + varint(version) + varint(1 << 24))); return s
c = conn()
# Open { name, Queue { capacity: 0 } } (and auto_delete: false since version 2).
kind = b'\x00\x00' + (b'\x00' if version >= 2 else b'')
opens = b''.join(req(i, b'\x01' + varint(200) + (b'%0200d' % i) + kind) for i in range(2000))
c.sendall(opens)
got = 0
while got < 2000 * 5: got += len(c.recv(1 << 20))
before = rss(b.pid)
h = conn(); h.settimeout(1)
try: h.sendall(b''.join(req(i, b'\x08') for i in range(100)))
except Exception: pass
p = conn(); p.settimeout(1)
pings = b''.join(req(i, b'\x00') for i in range(2000000))
sent = 0
try:
    while sent < len(pings): sent += p.send(pings[sent:sent + 65536])
except Exception: pass
time.sleep(1)
t = conn(); t0 = time.time(); t.sendall(req(1, b'\x00'))
t.settimeout(120)
try: t.recv(64); took = time.time() - t0
except Exception: took = float('inf')
after = rss(b.pid)
print(f'{sys.argv[1]}: pings accepted {sent} of {len(pings)} B; broker RSS {before} -> {after} KiB; another client\'s ping {took*1000:.1f} ms')
b.kill()
