"""What a run did: records acknowledged, finally lost, and retries on the way."""

from __future__ import annotations

from dataclasses import dataclass, field


class RecordsLost(RuntimeError):
    """Some records were not acknowledged after every retry."""


@dataclass
class Summary:
    sent: int = 0      # acknowledged by the target
    failed: int = 0    # finally lost (not acknowledged after the last retry)
    retried: int = 0   # records sent again after a failed attempt
    errors: list[str] = field(default_factory=list)  # the first few error messages

    def error(self, message: str, records: int = 1) -> None:
        self.failed += records
        if len(self.errors) < 5:
            self.errors.append(message)

    def raise_if_lost(self, target: str) -> "Summary":
        if self.failed:
            raise RecordsLost(f"{self.failed} records were not delivered to {target}, e.g. {self.errors[0]}")
        return self

    def __str__(self) -> str:
        text = f"sent {self.sent}, failed {self.failed}, retried {self.retried}"
        return text + (f" (first error: {self.errors[0]})" if self.errors else "")
