"""What the local stand-ins for Lambda's event source mappings share: a
background loop that hands what is waiting to the function every
`interval` seconds, in `workers` threads, until stopped. Each pump says
what one round is (`_round`); a failed round is logged and the next one
tries again, as the mapping would."""
import logging
import threading
from typing import List


class Pump:
    def __init__(self, name: str, logger: logging.Logger):
        self._name = name
        self._logger = logger
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []

    def _round(self) -> None:
        raise NotImplementedError

    def _run(self, interval: float, workers: int = 1) -> None:
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self._round()
                except Exception:  # keep pumping: the next round retries
                    self._logger.exception("A round of the %s failed", self._name)
        for number in range(workers):
            thread = threading.Thread(target=loop, name="%s-%d" % (self._name, number), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
