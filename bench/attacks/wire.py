# What the attack scripts share: ipcq's framing by hand, a broker process to attack, and
# its resident memory. Not a client: each script sends exactly the bytes it means to.
import os, socket, struct, subprocess, tempfile, threading

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

def start_broker(program, *args):
    """Starts `program` at a fresh socket; returns (process, address) once it listens."""
    d = tempfile.mkdtemp(); addr = os.path.join(d, 'ipcq.sock')
    b = subprocess.Popen([program, '--addr', addr, *args], stderr=subprocess.PIPE)
    for line in b.stderr:
        if b'listening' in line: break
    threading.Thread(target=lambda: [None for _ in b.stderr], daemon=True).start()
    return b, addr

def read_frame(s, buf):
    """The next frame's body from socket `s`, and what was read past it."""
    while True:
        if len(buf) >= 4:
            ln = struct.unpack('<I', buf[:4])[0]
            if len(buf) >= 4 + ln: return buf[4:4 + ln], buf[4 + ln:]
        chunk = s.recv(1 << 16)
        if not chunk: raise EOFError
        buf += chunk

def connect(addr):
    """A greeted connection in the broker's own protocol version (1 for builds before the
    hardening, 2 after, 3 since deliveries carry their redelivery counts), so that one
    script measures several builds: (socket, version, leftover)."""
    s = socket.socket(socket.AF_UNIX); s.connect(addr)
    hello, buf = read_frame(s, b'')
    version = hello[4]  # a one-byte varint
    s.sendall(frame(b'IPCQ' + varint(version) + varint(1 << 24)))
    return s, version, buf

def queue_kind(version):
    """Kind::Queue { capacity: 0 } (and auto_delete: false since version 2)."""
    return b'\x00\x00' + (b'\x00' if version >= 2 else b'')
