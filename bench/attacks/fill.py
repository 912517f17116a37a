# How much memory a broker with default limits takes when its byte budget is full
# (docs/broker.md). Usage:
#   python3 bench/attacks/fill.py PATH/TO/ipcq-broker ITEM_BYTES
# Fills queue after queue (each up to --max-queue-bytes, 256 MiB by default) with items of
# ITEM_BYTES until the broker-wide budget (1 GiB by default) is full, then prints the
# broker's RSS and what it counts as used.
import sys, time, socket
from wire import varint, frame, rss, start_broker, read_frame, connect, queue_kind
broker, size = sys.argv[1], int(sys.argv[2])
b, addr = start_broker(broker)
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
