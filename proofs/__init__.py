"""devdax.proofs: Z3 proofs about the spec (``devdax prove``).

Modules, each with one job (mypyvy's layering: statements -> translation -> solver -> CLI):

* ``runner``       Obligation, Verdict (proved / violated / unknown), the checklist, --json, exit codes.
                   Knows nothing about Z3.
* ``smt``          the solver layer: ``prove(queries, timeout)``: only unsat of the negation is a proof,
                   unknown or timeout is UNKNOWN; models rendered for people; the ``Term`` alias that
                   contains z3's ``Any``.
* ``geometry_z3``  spec/geometry.py as Z3 terms (64-bit bit-vectors where it masks, Ints where it uses
                   Python integers); agreement-tested against geometry.py on thousands of inputs.
* ``lemmas``       the bit-vector lemmas (get_unmapped_area, check_vma, pgoff_to_phys, negotiation,
                   huge fault), parameterised by a profile's check_vma era and fault rules.
* ``protocol``     the fault-vs-teardown protocol of one device as a transition system over sorts of
                   CPUs, vmas and entries; admin programs read from the profile (variants included).
* ``agreement``    the one agreement check (``agree``): a model's step relation against the spec's
                   explicit successors through its abstraction function, used by protocol,
                   lifetime, refcount and minor; and the protocol's abstraction.
* ``engine``       the one transition-system engine: inductive check, counterexample to induction
                   (two states + step), bounded search for a reachable trace, non-vacuity; each
                   encoding gives it a System (fresh state, Init, actions, invariants, a renderer).
* ``ghost``        the ghost numbering (a count equals the number of its holders), reused by every
                   counter proof.
* ``inductive``    the protocol's spec invariants + named strengthening for any number of
                   CPUs/vmas/entries (obligations ``proto_*``).
* ``lifetime``     the cdev profiles (v4.10, modern): one device's admin lifetime and its counts for any
                   number of files (``life_*``).
* ``refcount``     v4.7's kref lifetime: its counts and use after free for any number of files and
                   vmas (``rc_*``). Each claim has one owner: a profile gets one of the two.
* ``minor``        minor uniqueness and an exact minor ida for any number of devices (``minor*``).
* ``bmc``          bounded model checking of race configurations to depth K; traces replayed in the
                   spec and rendered as ``devdax check`` renders them.
* ``obligations``  the list ``devdax prove`` runs for a profile/variant.
* ``cli``          ``main(argv)``, dispatched from devdax/cli.py.
"""
