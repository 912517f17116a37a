# Attack: clients that never read their answers (docs/reliability.md). Usage:
#   python3 bench/attacks/unread.py PATH/TO/ipcq-broker
import sys, time
from wire import varint, req, rss, start_broker, connect, queue_kind
b, addr = start_broker(sys.argv[1])
version = None
def conn():
    global version
    s, version, _ = connect(addr)
    return s
c = conn()
opens = b''.join(req(i, b'\x01' + varint(200) + (b'%0200d' % i) + queue_kind(version)) for i in range(2000))
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
