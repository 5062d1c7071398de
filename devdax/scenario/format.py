"""The scenario format, one import for the backends: the vocabulary and data model (schema.py), the
loader (parse.py) and the output shape (report.py). docs/scenario-format.md is its reference.
"""

from __future__ import annotations

from devdax.scenario.parse import (
    OPS as OPS,
)
from devdax.scenario.parse import (
    load as load,
)
from devdax.scenario.parse import (
    load_all as load_all,
)
from devdax.scenario.parse import (
    parse as parse,
)
from devdax.scenario.report import (
    check_outcomes as check_outcomes,
)
from devdax.scenario.report import (
    exit_status as exit_status,
)
from devdax.scenario.report import (
    mismatches as mismatches,
)
from devdax.scenario.report import (
    step_record as step_record,
)
from devdax.scenario.report import (
    summary_line as summary_line,
)
from devdax.scenario.report import (
    summary_record as summary_record,
)
from devdax.scenario.schema import (
    ALIGNS as ALIGNS,
)
from devdax.scenario.schema import (
    CURRENT_PROFILE as CURRENT_PROFILE,
)
from devdax.scenario.schema import (
    DEFAULT_ALIGN as DEFAULT_ALIGN,
)
from devdax.scenario.schema import (
    DEFAULT_REGION_SIZE as DEFAULT_REGION_SIZE,
)
from devdax.scenario.schema import (
    ERRNO_NAMES as ERRNO_NAMES,
)
from devdax.scenario.schema import (
    FALLOC_PUNCH_HOLE as FALLOC_PUNCH_HOLE,
)
from devdax.scenario.schema import (
    FORK_STORE as FORK_STORE,
)
from devdax.scenario.schema import (
    FORMAT_ID as FORMAT_ID,
)
from devdax.scenario.schema import (
    IOCTL_REQUESTS as IOCTL_REQUESTS,
)
from devdax.scenario.schema import (
    MADVICE as MADVICE,
)
from devdax.scenario.schema import (
    MAP_FLAGS as MAP_FLAGS,
)
from devdax.scenario.schema import (
    MISMATCH as MISMATCH,
)
from devdax.scenario.schema import (
    MSYNC_FLAGS as MSYNC_FLAGS,
)
from devdax.scenario.schema import (
    OK as OK,
)
from devdax.scenario.schema import (
    OOPS as OOPS,
)
from devdax.scenario.schema import (
    OPEN_ACCESS_MODES as OPEN_ACCESS_MODES,
)
from devdax.scenario.schema import (
    OPEN_FLAGS as OPEN_FLAGS,
)
from devdax.scenario.schema import (
    OUTCOME_WORDS as OUTCOME_WORDS,
)
from devdax.scenario.schema import (
    PROFILES as PROFILES,
)
from devdax.scenario.schema import (
    PROT_FLAGS as PROT_FLAGS,
)
from devdax.scenario.schema import (
    SEEK_WHENCE as SEEK_WHENCE,
)
from devdax.scenario.schema import (
    SIGNALS as SIGNALS,
)
from devdax.scenario.schema import (
    SKIPPED as SKIPPED,
)
from devdax.scenario.schema import (
    Access as Access,
)
from devdax.scenario.schema import (
    Backend as Backend,
)
from devdax.scenario.schema import (
    Check as Check,
)
from devdax.scenario.schema import (
    Close as Close,
)
from devdax.scenario.schema import (
    Device as Device,
)
from devdax.scenario.schema import (
    Disable as Disable,
)
from devdax.scenario.schema import (
    DisableNamespace as DisableNamespace,
)
from devdax.scenario.schema import (
    Enable as Enable,
)
from devdax.scenario.schema import (
    EnableNamespace as EnableNamespace,
)
from devdax.scenario.schema import (
    Fallocate as Fallocate,
)
from devdax.scenario.schema import (
    ForkTouch as ForkTouch,
)
from devdax.scenario.schema import (
    Fsync as Fsync,
)
from devdax.scenario.schema import (
    G as G,
)
from devdax.scenario.schema import (
    HandleKind as HandleKind,
)
from devdax.scenario.schema import (
    Ioctl as Ioctl,
)
from devdax.scenario.schema import (
    K as K,
)
from devdax.scenario.schema import (
    Lseek as Lseek,
)
from devdax.scenario.schema import (
    M as M,
)
from devdax.scenario.schema import (
    Madvise as Madvise,
)
from devdax.scenario.schema import (
    Mmap as Mmap,
)
from devdax.scenario.schema import (
    Mprotect as Mprotect,
)
from devdax.scenario.schema import (
    Mremap as Mremap,
)
from devdax.scenario.schema import (
    Msync as Msync,
)
from devdax.scenario.schema import (
    Munmap as Munmap,
)
from devdax.scenario.schema import (
    Open as Open,
)
from devdax.scenario.schema import (
    Outcome as Outcome,
)
from devdax.scenario.schema import (
    Read as Read,
)
from devdax.scenario.schema import (
    Remove as Remove,
)
from devdax.scenario.schema import (
    Scenario as Scenario,
)
from devdax.scenario.schema import (
    ScenarioError as ScenarioError,
)
from devdax.scenario.schema import (
    Setup as Setup,
)
from devdax.scenario.schema import (
    Step as Step,
)
from devdax.scenario.schema import (
    Touch as Touch,
)
from devdax.scenario.schema import (
    Write as Write,
)
from devdax.scenario.schema import (
    allowed_outcomes as allowed_outcomes,
)
from devdax.scenario.schema import (
    errno_name as errno_name,
)
from devdax.scenario.schema import (
    format_size as format_size,
)
from devdax.scenario.schema import (
    is_outcome as is_outcome,
)
from devdax.scenario.schema import (
    parse_size as parse_size,
)
from devdax.scenario.schema import (
    run_steps as run_steps,
)
