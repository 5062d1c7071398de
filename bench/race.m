-- The fault-vs-teardown race of bench/bench_check.py race(N, "pud"), written in Murphi for Rumur
-- (issue 15): Config(profile="v4.10", race=True, cpus=N, faults=2, units=2, files=1, vmas=1,
-- first_fault="pud"), explored by devdax as `check(Ctx.of(cfg))` (symmetry + movers).
--
-- Written by hand from spec/ (not generated from it), so that the two checkers' agreement on the
-- number of states is a cross-check that they explore the same race. Same atomicity as devdax's
-- reduced exploration (model/reduction.py): a rule is one fused transition,
--   * fault_lock+fault_check (+ fault_unlock and the FALLBACK retry one size down, + check again),
--   * fault_insert+fault_unlock,
--   * one step of the admin's remove program (starting the program runs its first step), skipping
--     the steps that do not apply (spec/admin.py admin_steps, _finish).
-- CPUs are a scalarset: Rumur's symmetry reduction stands for devdax's sort of the CPU records
-- (spec/symmetry.py canonical).
--
-- bench/bench_rumur.py writes the N-specific copy: it replaces the NCPUS line and, for a planted
-- bug (spec/variants.py), the remove program between the PROGRAM markers. As it stands this file
-- is N = 2 with the v4.10 remove program.

const
  NCPUS: 2;  -- @cpus
  FAULTS: 2;  -- cfg.faults: faults each CPU takes
  UNITS: 2;  -- cfg.units: align units of the one device (and of the vma mapping it whole)
  PAGE: 4096;
  PMD: 2097152;
  PUD: 1073741824;
  ALIGN: 2097152;  -- cfg.align "2M"
  -- spec/config.py REGION_BASE = 1 << 36: the device's one range starts there (Layout.of)
  RANGE_START: 68719476736;
  RANGE_END: 68723671039;  -- RANGE_START + UNITS * ALIGN - 1
  -- race_prefix mmaps the device whole: MM_WINDOW = (0x7F00 << 32) + PAGE rounded up to ALIGN by
  -- dax_get_unmapped_area (spec/vma.py), i.e. 0x7F0000200000, UNITS * ALIGN long
  VMA_START: 139637978824704;
  VMA_END: 139637983019008;
  -- profile v4.10 (spec/profiles.py V410) switches this race reaches
  READ_LOCK_RCU: false;  -- ReadLock.SRCU
  FAULT_FALLBACK: true;  -- FaultRules.fallback (M3/M4 fix)
  VMA_BOUNDS: true;  -- FaultRules.vma_bounds
  PUD_SUPPORTED: true;  -- FaultRules.pud_supported
  DEFAULT_CASE_LEAKS_LOCK: false;  -- M20
  NR_RESERVED_MINORS: 1;  -- Ctx.nr_reserved_minors(): cfg.instances
  MAX_PC: 8;

type
  CPU: scalarset(NCPUS);
  DevIdx: -1 .. 0;  -- one device instance (devices=1, generations=1); -1 = none
  FileIdx: -1 .. 0;
  VmaIdx: -1 .. 0;
  Unit: 0 .. UNITS - 1;
  Word: -1 .. 281474976710656;  -- 2^48: any address or size of this model
  Addr: 0 .. VMA_END;
  Phys: 0 .. RANGE_END;
  FaultSize: 0 .. PUD;
  Pc: 0 .. MAX_PC;

  RegionPhase: enum { RG_NONE, RG_LIVE, RG_GONE };
  DevPhase: enum { D_NONE, D_CREATING, D_LIVE, D_FAILED, D_RELEASED };
  CpuPc: enum { C_IDLE, C_LOCKED, C_CHECKED, C_DONE };
  FaultResult: enum { R_NONE, R_NOPAGE, R_FALLBACK, R_SIGBUS };
  Prog: enum { P_NONE, P_PROBE, P_REMOVE };
  -- State.oops is a string; what matters to the invariants is its kind (its prefix)
  Oops: enum { O_NONE, O_UAF, O_REFCOUNT, O_NULL, O_LIST };
  Step: enum { S_CLEAR_ALIVE, S_SYNCHRONIZE_START, S_SYNCHRONIZE_WAIT, S_UNMAP_MAPPING_RANGE,
               S_CDEV_DEL, S_DEVICE_DEL, S_PUT_DEVICE, S_DAX_REGION_UNREGISTER, S_END };

  -- spec/state.py, field for field
  Region: record
    phase: RegionPhase;
    kref: 0 .. 3;
    ida: 0 .. 1;
    provider_ref: boolean;
    devm_ref: boolean;
    freed: boolean;
  end;
  Dev: record
    phase: DevPhase;
    id: -1 .. 0;
    minor: -1 .. 0;
    id_held: boolean;
    minor_held: boolean;
    init_ref: boolean;
    dev_ref: 0 .. 3;
    kref: 0 .. 2;
    cdev_live: boolean;
    cdev_ref: 0 .. 3;
    cdev_mapped: boolean;
    icdev_cached: boolean;
    icdev_stale: boolean;
    inode_ref: 0 .. 1;
    holds_region: boolean;
    registered: boolean;
    bound: boolean;
    alive: boolean;
    children: 0 .. 0;
    zombies: 0 .. 0;
    dead: boolean;
  end;
  File: record
    dev: DevIdx;
    writable: boolean;
    fd: boolean;
    f_count: 0 .. 2;
    private_null: boolean;
    readable: boolean;
  end;
  Vma: record
    file: FileIdx;
    start: Addr;
    end_: Addr;  -- State's "end" (a Murphi keyword)
    pgoff: 0 .. 1024;
    shared: boolean;
    mayshare: boolean;
    write: boolean;
    dontcopy: boolean;
    read: boolean;
    nohuge: boolean;
    seq_read: boolean;
    rand_read: boolean;
    dontdump: boolean;
  end;
  -- State.entries is a frozenset of Entry(vma, addr, size, phys). Here: one slot per align unit of
  -- the vma, holding the entry whose addr lies in that unit, if any. Exact for this configuration:
  -- a fault inserts only where no entry covers the address (covered()), and every entry inserted
  -- is one align unit (entries_exact), so no two entries share a unit.
  Entry: record
    present: boolean;
    vma: VmaIdx;
    addr: Addr;
    size: FaultSize;
    phys: Phys;
  end;
  Cpu: record
    pc: CpuPc;
    left: 0 .. FAULTS;
    nest: 0 .. 2;
    pre_gp: boolean;
    vma: VmaIdx;
    addr: Addr;
    size: FaultSize;
    result: FaultResult;
    phys: Phys;
  end;
  Admin: record
    prog: Prog;
    dev: -1 .. 0;
    pc: Pc;
    generation: 0 .. 1;
    binds_left: array [0 .. 0] of 0 .. 0;
    resume_set: boolean;  -- State.admin.resume is None in this race: never set
  end;

var
  regions: array [0 .. 0] of Region;
  devs: array [0 .. 0] of Dev;
  files: array [0 .. 0] of File;
  vmas: array [0 .. 0] of Vma;
  entries: array [Unit] of Entry;
  cpus: array [CPU] of Cpu;
  minors: 0 .. 1;
  gp: boolean;
  admin: Admin;
  oops: Oops;

-- ------------------------------------------------------------------ remove program ----
-- BEGIN PROGRAM (spec/profiles.py V410.remove, then dax_region_unregister; spec/admin.py program)
function remove_step(pc: Pc): Step;
begin
  switch pc
  case 0: return S_CLEAR_ALIVE;
  case 1: return S_SYNCHRONIZE_START;
  case 2: return S_SYNCHRONIZE_WAIT;
  case 3: return S_UNMAP_MAPPING_RANGE;
  case 4: return S_CDEV_DEL;
  case 5: return S_DEVICE_DEL;
  case 6: return S_PUT_DEVICE;
  case 7: return S_DAX_REGION_UNREGISTER;
  else return S_END;
  end;
end;

-- the step marked "!": it completes the kill (no_entry_after_kill reads Dev.dead)
function remove_kill_end(pc: Pc): boolean;
begin
  return pc = 3;
end;
-- END PROGRAM

-- ----------------------------------------------------------------------- helpers ----

function b2i(b: boolean): 0 .. 1;
begin
  if b then return 1; else return 0; end;
end;

-- spec/ctx.py oops(): the first thing the kernel would have crashed on is kept
procedure set_oops(k: Oops);
begin
  if oops = O_NONE then oops := k; end;
end;

-- spec/ctx.py bug(): a BUG replaces an earlier refcount WARN, never an earlier crash
procedure set_bug(k: Oops);
begin
  if oops = O_NONE | oops = O_REFCOUNT then oops := k; end;
end;

-- an empty entry slot: every field at one value, so that equal sets of entries are equal states
procedure clear_entry(u: Unit);
begin
  entries[u].present := false;
  entries[u].vma := -1;
  entries[u].addr := 0;
  entries[u].size := 0;
  entries[u].phys := 0;
end;

-- the Cpu(...) constructor of spec/fault.py: a whole record at once
procedure set_cpu(i: CPU; pc: CpuPc; left: 0 .. FAULTS; nest: 0 .. 2; pre_gp: boolean; v: VmaIdx;
                  a: Addr; size: FaultSize; res: FaultResult; phys: Phys);
begin
  cpus[i].pc := pc;
  cpus[i].left := left;
  cpus[i].nest := nest;
  cpus[i].pre_gp := pre_gp;
  cpus[i].vma := v;
  cpus[i].addr := a;
  cpus[i].size := size;
  cpus[i].result := res;
  cpus[i].phys := phys;
end;

function created(d: DevIdx): boolean;
begin
  return devs[d].phase = D_CREATING | devs[d].phase = D_LIVE;
end;

function dev_of_vma(v: VmaIdx): DevIdx;
begin
  return files[vmas[v].file].dev;
end;

-- ------------------------------------------------------------- spec/kobject.py ----

procedure region_put(r: 0 .. 0);
begin
  if regions[r].freed | regions[r].kref <= 0 then
    set_oops(O_UAF);
  else
    regions[r].kref := regions[r].kref - 1;
    if regions[r].kref = 0 then regions[r].freed := true; end;
  end;
end;

-- dax_dev_release (v4.10): minor and id back, then the region
procedure dev_release(d: DevIdx);
var holds: boolean;
begin
  if devs[d].minor_held then
    minors := 0;  -- minors & ~(1 << minor): the one minor is 0
    devs[d].minor_held := false;
  end;
  if devs[d].id_held & regions[0].freed then
    set_oops(O_UAF);
    return;
  end;
  if devs[d].id_held then
    regions[0].ida := 0;  -- ida & ~(1 << id): the one id is 0
    devs[d].id_held := false;
  end;
  holds := devs[d].holds_region;
  devs[d].phase := D_RELEASED;
  devs[d].inode_ref := 0;
  devs[d].holds_region := false;
  devs[d].alive := false;
  if holds then region_put(0); end;
end;

procedure device_put(d: DevIdx);
begin
  if devs[d].dev_ref <= 0 | devs[d].phase = D_RELEASED then
    set_oops(O_REFCOUNT);
    return;
  end;
  devs[d].dev_ref := devs[d].dev_ref - 1;
  if devs[d].dev_ref = 0 then dev_release(d); end;
end;

procedure cdev_put(d: DevIdx);
begin
  if devs[d].phase = D_RELEASED then set_oops(O_UAF); return; end;
  if devs[d].cdev_ref <= 0 then set_oops(O_REFCOUNT); return; end;
  devs[d].cdev_ref := devs[d].cdev_ref - 1;
  if devs[d].cdev_ref = 0 then
    devs[d].icdev_cached := false;
    device_put(d);
  end;
end;

procedure cd_forget(d: DevIdx);
begin
  if devs[d].icdev_stale & !(exists f: 0 .. 0 do files[f].dev = d end) then
    devs[d].icdev_stale := false;
    set_bug(O_LIST);
  end;
end;

-- ------------------------------------------------------------ spec/admin.py steps ----

-- the step returns SKIP (does not apply): its program moves past it at once
function step_skips(st: Step; a: DevIdx): boolean;
begin
  switch st
  case S_CLEAR_ALIVE, S_SYNCHRONIZE_START, S_UNMAP_MAPPING_RANGE, S_DEVICE_DEL: return !created(a);
  case S_SYNCHRONIZE_WAIT: return !gp;
  case S_CDEV_DEL: return !devs[a].cdev_live;
  case S_PUT_DEVICE: return !devs[a].init_ref;
  else return false;
  end;
end;

-- synchronize_wait: the grace period ends once no pre-existing reader is left
function step_blocked(st: Step): boolean;
begin
  return st = S_SYNCHRONIZE_WAIT & (exists i: CPU do cpus[i].pre_gp end);
end;

procedure step_run(st: Step; a: DevIdx);
begin
  switch st
  case S_CLEAR_ALIVE:
    devs[a].alive := false;
    devs[a].bound := false;
  case S_SYNCHRONIZE_START:
    gp := true;
    for i: CPU do
      if cpus[i].nest > 0 then cpus[i].pre_gp := true; end;
    end;
  case S_SYNCHRONIZE_WAIT:
    gp := false;
  case S_UNMAP_MAPPING_RANGE:
    for u: Unit do
      if entries[u].present then
        if vmas[entries[u].vma].file >= 0 then
          if files[vmas[entries[u].vma].file].dev = a then
            clear_entry(u);
          end;
        end;
      end;
    end;
  case S_CDEV_DEL:
    devs[a].cdev_live := false;
    devs[a].cdev_mapped := false;
    cdev_put(a);
  case S_DEVICE_DEL:
    devs[a].registered := false;
    devs[a].bound := false;
    cd_forget(a);
  case S_PUT_DEVICE:
    devs[a].init_ref := false;
    if devs[a].phase != D_LIVE then devs[a].phase := D_FAILED; end;
    device_put(a);
  case S_DAX_REGION_UNREGISTER:
    regions[a].phase := RG_GONE;
    if regions[a].devm_ref then
      regions[a].devm_ref := false;
      region_put(a);
    end;
  end;
end;

-- the first pc from pc on whose step applies (MAX_PC: the program is over)
function first_applying(pc: Pc; a: DevIdx): Pc;
var p: Pc;
begin
  p := pc;
  while remove_step(p) != S_END & step_skips(remove_step(p), a) do
    p := p + 1;
  end;
  return p;
end;

-- admin_steps: the program can take its next step (one that applies and is not blocked)
function admin_can_step(pc: Pc; a: DevIdx): boolean;
var p: Pc;
begin
  p := first_applying(pc, a);
  return remove_step(p) != S_END & !step_blocked(remove_step(p));
end;

-- admin_steps then _finish: run the step, mark the kill done, skip what no longer applies, and go
-- back to idle at the end of the program
procedure admin_step();
var p: Pc;
begin
  p := first_applying(admin.pc, admin.dev);
  step_run(remove_step(p), admin.dev);
  if remove_kill_end(p) then devs[admin.dev].dead := true; end;
  p := first_applying(p + 1, admin.dev);
  if remove_step(p) = S_END then
    admin.prog := P_NONE;
    admin.dev := -1;
    admin.pc := 0;
  else
    admin.pc := p;
  end;
end;

-- ---------------------------------------------------------------- spec/fault.py ----

function covered(v: VmaIdx; a: Word): boolean;
begin
  return exists u: Unit do
    entries[u].present & entries[u].vma = v & entries[u].addr <= a & a < entries[u].addr + entries[u].size
  end;
end;

-- fault_targets: one faulting address per align unit of the vma
function target(v: VmaIdx; u: Unit): Word;
var base: Word;
begin
  base := vmas[v].start - vmas[v].start % ALIGN;
  if base + u * ALIGN < vmas[v].start then return vmas[v].start; end;
  return base + u * ALIGN;
end;

function first_size(nohuge: boolean): FaultSize;
begin
  if nohuge then return PAGE; end;
  return PUD;  -- cfg.first_fault "pud"
end;

function next_fault_size(size: FaultSize): FaultSize;
begin
  if size = PUD then return PMD; end;
  if size = PMD then return PAGE; end;
  return 0;  -- none: the mm gives up with SIGBUS
end;

procedure fault_lock(i: CPU; v: VmaIdx; a: Word);
var size: FaultSize;
begin
  if cpus[i].result = R_FALLBACK then
    size := cpus[i].size;
  else
    size := first_size(vmas[v].nohuge);
  end;
  set_cpu(i, C_LOCKED, cpus[i].left, cpus[i].nest + 1, false, v, a, size, R_NONE, 0);
end;

-- check_vma (PrivateTest.VM_MAYSHARE, no pgoff check in v4.10) == 0
function check_vma(alive: boolean; v: VmaIdx): boolean;
begin
  return alive & vmas[v].mayshare & vmas[v].start % ALIGN = 0 & vmas[v].end_ % ALIGN = 0;
end;

-- fault_check: check_vma, dax_huge_fault (negotiate, vma bounds, pgoff_to_phys); and the step
-- property fault_size_negotiated on its outcome
procedure fault_check(i: CPU);
var v: VmaIdx; d: DevIdx; size: FaultSize; res: FaultResult; dead: boolean;
    block: Word; pgoff: Word; phys: Word;
begin
  v := cpus[i].vma;
  d := dev_of_vma(v);
  if devs[d].phase = D_RELEASED then set_oops(O_UAF); return; end;
  size := cpus[i].size;
  dead := !check_vma(devs[d].alive, v);
  res := R_NONE;
  if dead then
    res := R_SIGBUS;
  elsif size = PUD & !PUD_SUPPORTED then
    res := R_FALLBACK;
  elsif size < ALIGN then
    res := R_SIGBUS;
  elsif size > ALIGN & FAULT_FALLBACK then
    res := R_FALLBACK;
  end;
  if res = R_NONE then
    block := cpus[i].addr - cpus[i].addr % size;
    if VMA_BOUNDS & (block < vmas[v].start | block + size > vmas[v].end_) then
      res := R_SIGBUS;
    else
      pgoff := vmas[v].pgoff + (block - vmas[v].start) / PAGE;
      phys := RANGE_START + pgoff * PAGE;
      if pgoff > (RANGE_END - RANGE_START) / PAGE | phys + size - 1 > RANGE_END then
        res := R_SIGBUS;
      else
        res := R_NOPAGE;
      end;
    end;
  end;
  -- fault_size_negotiated: on a live vma, > align falls back and < align is SIGBUS
  assert dead | !(size > ALIGN & res != R_FALLBACK) "fault_size_negotiated";
  assert dead | !(size < ALIGN & res != R_SIGBUS) "fault_size_negotiated";
  if res = R_NOPAGE then
    cpus[i].pc := C_CHECKED;
    cpus[i].result := R_NOPAGE;
    cpus[i].addr := block;
    cpus[i].phys := phys;
  elsif res = R_FALLBACK & DEFAULT_CASE_LEAKS_LOCK & !PUD_SUPPORTED & size = PUD then
    cpus[i].pc := C_IDLE;
    cpus[i].result := R_FALLBACK;
    cpus[i].size := PMD;
  else
    cpus[i].pc := C_DONE;
    cpus[i].result := res;
  end;
end;

-- fault_insert: exactly one entry of the fault size unless one covers the address (-EBUSY); with
-- the step properties no_sleep_in_rcu and no_map_of_dead_device
procedure fault_insert(i: CPU);
var v: VmaIdx; u: Unit;
begin
  assert !READ_LOCK_RCU "no_sleep_in_rcu";
  cpus[i].pc := C_DONE;
  v := cpus[i].vma;
  if !covered(v, cpus[i].addr) then
    assert !devs[dev_of_vma(v)].dead "no_map_of_dead_device";
    u := (cpus[i].addr - vmas[v].start) / ALIGN;
    entries[u].present := true;
    entries[u].vma := v;
    entries[u].addr := cpus[i].addr;
    entries[u].size := cpus[i].size;
    entries[u].phys := cpus[i].phys;
  end;
end;

-- fault_unlock: dax_read_unlock; FALLBACK keeps the address for the retry one size down
procedure fault_unlock(i: CPU);
var nest: 0 .. 2; nxt: FaultSize; keep: boolean;
begin
  nest := cpus[i].nest - 1;
  keep := cpus[i].pre_gp & nest > 0;
  if cpus[i].result = R_FALLBACK then
    nxt := next_fault_size(cpus[i].size);
    if nxt != 0 then
      set_cpu(i, C_IDLE, cpus[i].left, nest, keep, cpus[i].vma, cpus[i].addr, nxt, R_FALLBACK, 0);
      return;
    end;
  end;
  set_cpu(i, C_IDLE, cpus[i].left - 1, nest, keep, -1, 0, 0, R_NONE, 0);
end;

-- model/reduction.py _then: unlock after a failed check or an insert, and the mm's retry one size
-- down after FALLBACK (unlock, re-lock, check), as long as the CPU is done
procedure fused_tail(i: CPU);
begin
  while cpus[i].pc = C_DONE do
    fault_unlock(i);
    if cpus[i].pc = C_IDLE & cpus[i].result = R_FALLBACK & cpus[i].nest = 0 then
      fault_lock(i, cpus[i].vma, cpus[i].addr);
      fault_check(i);
    end;
  end;
end;

-- ------------------------------------------------------------------------- rules ----

ruleset i: CPU do
  ruleset u: Unit do
    rule "fault_lock+fault_check"
      cpus[i].pc = C_IDLE & cpus[i].result != R_FALLBACK & cpus[i].left > 0 & vmas[0].file >= 0
      & target(0, u) < vmas[0].end_ & !covered(0, target(0, u))
    ==>
    begin
      fault_lock(i, 0, target(0, u));
      fault_check(i);
      fused_tail(i);
    end;
  endruleset;

  -- a FALLBACK retry that is not fused (the read lock still held: M20); unreachable in v4.10
  rule "fault_lock (retry)"
    cpus[i].pc = C_IDLE & cpus[i].result = R_FALLBACK
  ==>
  begin
    fault_lock(i, cpus[i].vma, cpus[i].addr);
    fault_check(i);
    fused_tail(i);
  end;

  rule "fault_insert+fault_unlock"
    cpus[i].pc = C_CHECKED
  ==>
  begin
    fault_insert(i);
    fused_tail(i);
  end;
endruleset;

-- provider removal: starting the program runs its first step (spec/system.py admin_transitions);
-- the race starts only "remove"
rule "admin remove"
  admin.prog = P_NONE & regions[0].phase = RG_LIVE & admin_can_step(0, 0)
==>
begin
  admin.prog := P_REMOVE;
  admin.dev := 0;
  admin.pc := 0;
  admin_step();
end;

rule "admin"
  admin.prog = P_REMOVE & admin_can_step(admin.pc, admin.dev)
==>
begin
  admin_step();
end;

-- ---------------------------------------------------------------------- start ----

-- spec/system.py race_prefix: probed, opened read-write, mapped whole (values as devdax builds them)
startstate "race_prefix"
begin
  regions[0].phase := RG_LIVE;
  regions[0].kref := 2;
  regions[0].ida := 1;
  regions[0].provider_ref := false;
  regions[0].devm_ref := true;
  regions[0].freed := false;

  devs[0].phase := D_LIVE;
  devs[0].id := 0;
  devs[0].minor := 0;
  devs[0].id_held := true;
  devs[0].minor_held := true;
  devs[0].init_ref := true;
  devs[0].dev_ref := 2;
  devs[0].kref := 0;
  devs[0].cdev_live := true;
  devs[0].cdev_ref := 2;
  devs[0].cdev_mapped := true;
  devs[0].icdev_cached := true;
  devs[0].icdev_stale := false;
  devs[0].inode_ref := 1;
  devs[0].holds_region := true;
  devs[0].registered := true;
  devs[0].bound := false;
  devs[0].alive := true;
  devs[0].children := 0;
  devs[0].zombies := 0;
  devs[0].dead := false;

  files[0].dev := 0;
  files[0].writable := true;
  files[0].fd := true;
  files[0].f_count := 2;
  files[0].private_null := false;
  files[0].readable := true;

  vmas[0].file := 0;
  vmas[0].start := VMA_START;
  vmas[0].end_ := VMA_END;
  vmas[0].pgoff := 0;
  vmas[0].shared := true;
  vmas[0].mayshare := true;
  vmas[0].write := true;
  vmas[0].dontcopy := false;
  vmas[0].read := true;
  vmas[0].nohuge := false;
  vmas[0].seq_read := false;
  vmas[0].rand_read := false;
  vmas[0].dontdump := false;

  for u: Unit do
    clear_entry(u);
  end;

  for i: CPU do
    set_cpu(i, C_IDLE, FAULTS, 0, false, -1, 0, 0, R_NONE, 0);
  end;

  minors := 1;
  gp := false;
  admin.prog := P_NONE;
  admin.dev := -1;
  admin.pc := 0;
  admin.generation := 1;
  admin.binds_left[0] := 0;
  admin.resume_set := false;
  oops := O_NONE;
end;

-- -------------------------------------------------------- spec/invariants.py ----

invariant "refcount_exact_all"
  (regions[0].freed | regions[0].phase = RG_NONE
   | regions[0].kref = b2i(regions[0].provider_ref) + b2i(regions[0].devm_ref)
                       + b2i(devs[0].holds_region & devs[0].phase != D_RELEASED))
  & (devs[0].phase = D_NONE | devs[0].phase = D_RELEASED
     | (devs[0].cdev_ref = b2i(devs[0].cdev_live) + b2i(files[0].dev = 0)
        & devs[0].dev_ref = b2i(devs[0].init_ref) + b2i(devs[0].cdev_ref > 0)))
  & (files[0].dev < 0 | files[0].f_count = b2i(files[0].fd) + b2i(vmas[0].file = 0));

invariant "no_use_after_free"
  oops != O_UAF
  & (files[0].dev < 0 | devs[files[0].dev].phase != D_RELEASED)
  & (vmas[0].file < 0 | files[vmas[0].file].dev >= 0)
  & !(devs[0].holds_region & devs[0].phase != D_RELEASED & regions[0].freed);

invariant "no_refcount_underflow" oops != O_REFCOUNT;
invariant "no_null_deref" oops != O_NULL;
invariant "no_list_corruption" oops != O_LIST;

invariant "ida_exact"
  minors = b2i(devs[0].minor_held)
  & (regions[0].freed | regions[0].ida = b2i(devs[0].id_held));

invariant "minor_unique" true;  -- one device instance: no two can share a minor

invariant "minors_in_range"
  !devs[0].minor_held | devs[0].minor < NR_RESERVED_MINORS;

-- the admin creates nothing in this race (_admin_creating is false while it removes)
invariant "alive_implies_registered"
  !devs[0].alive | (devs[0].registered & devs[0].cdev_mapped);

invariant "no_entry_after_kill"
  !devs[0].dead
  | !(exists u: Unit do
        entries[u].present & vmas[entries[u].vma].file >= 0 & files[vmas[entries[u].vma].file].dev = 0
      end);

invariant "removed_region_dead"
  regions[0].phase != RG_GONE | !(devs[0].alive | devs[0].registered);

invariant "lock_balanced"
  forall i: CPU do cpus[i].pc != C_IDLE | cpus[i].nest = 0 end;

invariant "vmas_shared" vmas[0].file < 0 | vmas[0].mayshare;

invariant "vmas_aligned"
  vmas[0].file < 0 | (vmas[0].start % ALIGN = 0 & vmas[0].end_ % ALIGN = 0);

invariant "entries_exact"
  forall u: Unit do
    !entries[u].present
    | (vmas[entries[u].vma].file >= 0
       & entries[u].size = ALIGN
       & entries[u].addr >= vmas[entries[u].vma].start
       & entries[u].addr + entries[u].size <= vmas[entries[u].vma].end_
       & entries[u].phys = RANGE_START
                           + (vmas[entries[u].vma].pgoff * PAGE + entries[u].addr - vmas[entries[u].vma].start)
       & entries[u].phys + entries[u].size - 1 <= RANGE_END)
  end;

invariant "entries_naturally_aligned"
  forall u: Unit do !entries[u].present | entries[u].phys % entries[u].size = 0 end;

-- quiescent() needs every file closed: never in this race, where the file stays open
invariant "no_leak_at_quiescence"
  files[0].dev >= 0 | admin.prog != P_NONE | regions[0].phase = RG_LIVE
  | ((devs[0].phase = D_NONE | devs[0].phase = D_RELEASED)
     & (regions[0].phase = RG_NONE | regions[0].freed) & minors = 0);

-- teardown_finishes: from every state the admin can get back to idle (AG EF in Rumur's liveness)
liveness "teardown_finishes" admin.prog = P_NONE;
