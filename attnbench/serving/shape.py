"""The load a serve record ran: what serve-bench's tables and plots group records by."""

from __future__ import annotations

from dataclasses import dataclass

from attnbench.records.record import Record


@dataclass(frozen=True, order=True)
class Shape:
    """The load a serve record ran (and on which model); only records of one shape are comparable."""

    input_len: int
    output_len: int
    num_prompts: int
    request_rate: float | None = None  # None: all at once
    max_concurrency: int | None = None
    model: str = ""

    @classmethod
    def of(cls, rec: Record) -> "Shape":
        s = rec.scenario
        return cls(int(s.get("input_len") or 0), int(s.get("output_len") or 0), int(s.get("num_prompts") or 0),
                   s.get("request_rate"), s.get("max_concurrency"), str(s.get("model") or s.get("served_model") or ""))

    @property
    def label(self) -> str:
        text = f"{self.input_len}:{self.output_len} x {self.num_prompts}"
        if self.request_rate is not None:
            text += f" @ {self.request_rate:g} req/s"
        if self.max_concurrency is not None:
            text += f" (concurrency <= {self.max_concurrency})"
        return text + (f" · {self.model}" if self.model else "")

    @property
    def slug(self) -> str:
        """File-name form: 1000x1000-n256[-r4][-c64]."""
        text = f"{self.input_len}x{self.output_len}-n{self.num_prompts}"
        if self.request_rate is not None:
            text += f"-r{self.request_rate:g}"
        if self.max_concurrency is not None:
            text += f"-c{self.max_concurrency}"
        return text
