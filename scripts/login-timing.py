#!/usr/bin/env python3
"""Times wrong-password logins for an admin's email against logins for an unknown email on
MongoDB, alternating in random order, and prints both medians with a permutation test of
their difference. Run: scripts/with-test-mongo.sh scripts/login-timing.py target/debug/orgsvc [ROUNDS]"""
import json, os, random, statistics, subprocess, socket, sys, time, urllib.request, urllib.error
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
port = free_port(); base = f"http://127.0.0.1:{port}"
env = dict(PATH=os.environ["PATH"], RUST_LOG="warn", ORGSVC_HTTP_ADDR=f"127.0.0.1:{port}", ORGSVC_STORAGE="mongodb",
           ORGSVC_MONGODB_URI=os.environ["ORGSVC_TEST_MONGODB_URI"], ORGSVC_MONGODB_DATABASE=f"timing{int(time.time())}",
           ORGSVC_RATE_LIMIT_LOGIN_PER_MINUTE="0", ORGSVC_RATE_LIMIT_CREATE_PER_MINUTE="0", ORGSVC_LOCKOUT_THRESHOLD="1000000")
svc = subprocess.Popen([sys.argv[1], "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def req(path, body):
    r = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST", headers={"content-type": "application/json"})
    t = time.perf_counter()
    try:
        code = urllib.request.urlopen(r, timeout=30).status
    except urllib.error.HTTPError as e:
        code = e.code
    return code, (time.perf_counter() - t) * 1000
for _ in range(100):
    try:
        urllib.request.urlopen(base + "/health/ready", timeout=1); break
    except Exception: time.sleep(0.2)
req("/org/create", {"organization_name": "Timing", "email": "known@timing.test", "password": "correct horse battery"})
known, unknown = [], []
for i in range(int(sys.argv[2]) if len(sys.argv) > 2 else 230):
    order = [("known@timing.test", known), ("nobody@timing.test", unknown)]
    random.shuffle(order)
    for email, bucket in order:
        code, ms = req("/admin/login", {"email": email, "password": "wrong password 123"})
        assert code == 401, code
        bucket.append(ms)
svc.terminate(); svc.wait()
k, u = statistics.median(known), statistics.median(unknown)
# Permutation test on the difference of medians.
pooled = known + unknown; n = len(known); obs = abs(k - u); extreme = 0; rounds = 2000
for _ in range(rounds):
    random.shuffle(pooled)
    if abs(statistics.median(pooled[:n]) - statistics.median(pooled[n:])) >= obs: extreme += 1
print(f"wrong password, known email: median {k:.2f} ms; unknown email: median {u:.2f} ms; "
      f"difference {k-u:+.2f} ms; permutation p = {extreme/rounds:.3f} over {len(known)}+{len(unknown)} logins")
