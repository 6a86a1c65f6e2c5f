"""Built-in offline instruction tasks (num2words, plural, translate_country, capital, date_format).

See `forgetless.data.tasks.builtin` for the task table, data sources and default metrics.
"""

from forgetless.data.tasks.builtin import (
    BUILTIN_TASKS,
    TASK_SPECS,
    TaskSpec,
    build_task,
    write_builtin_suite,
)
from forgetless.data.tasks.phrasings import PHRASINGS

__all__ = ["BUILTIN_TASKS", "PHRASINGS", "TASK_SPECS", "TaskSpec", "build_task", "write_builtin_suite"]
