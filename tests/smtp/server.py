#!/usr/bin/python3
"""A real SMTP server for latchkey's mail tests (Debian's python3-aiosmtpd).

Two listeners on 127.0.0.1: --plain (no TLS) and --starttls (STARTTLS with
--cert/--key, required before MAIL). Every accepted message is saved whole
to --dir as NNNNNN.eml (written to a temporary name, then renamed, so a
reader never sees half a file). A recipient whose local part is `reject` is
refused for good (550), one whose local part is `tempfail` for now (451).
Prints READY once both listeners accept; stops on SIGTERM.
"""
import argparse
import itertools
import os
import pathlib
import signal
import ssl
import threading

from aiosmtpd.controller import Controller


class SaveToDir:
    def __init__(self, out_dir):
        self.dir = pathlib.Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.seq = itertools.count(1)
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0]
        if local == "reject":
            return "550 5.1.1 mailbox unavailable"
        if local == "tempfail":
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            n = next(self.seq)
        partial = self.dir / f".{n}.tmp"
        partial.write_bytes(envelope.original_content)
        os.replace(partial, self.dir / f"{n:06d}.eml")
        return f"250 2.0.0 queued as {n}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--plain", type=int, required=True)
    parser.add_argument("--starttls", type=int, required=True)
    args = parser.parse_args()

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    handler = SaveToDir(args.dir)
    common = dict(hostname="127.0.0.1", server_hostname="localhost")
    controllers = [
        Controller(handler, port=args.plain, **common),
        Controller(handler, port=args.starttls, tls_context=context,
                   require_starttls=True, **common),
    ]
    for controller in controllers:
        controller.start()
    print("READY", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for controller in controllers:
        controller.stop()


if __name__ == "__main__":
    main()
