"""Scaffolds for constrained generation: a SMILES with optional ``*`` attachment points.

``parse_scaffold("c1ccc2[nH]ccc2c1")`` lets every scaffold atom grow where its valence allows;
``parse_scaffold("*c1ccncc1")`` marks the atoms bonded to a ``*`` as the only ones that may grow, and
each ``*`` is a position the generator fills (a substituent bond there; the ``*`` atoms are removed). Containment is RDKit's
substructure match of the scaffold Mol (:func:`contains`): elements, charges, bonds and aromaticity
must match, hydrogen counts need not (an N-substituted indole contains ``c1ccc2[nH]ccc2c1``; use ``*`` to
keep a hydrogen where it is).

:func:`holds` is the one rule for "a molecule holds the scaffold" that the samplers and the
benchmarks use: :func:`contains` for a scaffold without ``*``, and for one with ``*`` the marked rule
(some match where substituents sit exactly at the ``*``).

Malformed input raises ``ValueError`` with one line that names the scaffold and what is wrong.
"""
from __future__ import annotations

from dataclasses import dataclass

from rdkit import Chem

from .build import quiet_rdkit
from .convert import MolLike, to_mol, to_smiles

_ATTACH = "molgen_attach"


@dataclass(frozen=True)
class Scaffold:
    """A parsed scaffold: ``mol`` (sanitised, hydrogens implicit, no ``*`` atoms) and, per atom of
    ``mol``, whether it may grow (``attachable``: all True when the SMILES has no ``*``) and how many
    ``*`` it carries (``stars``: bonds the generator must add there)."""

    text: str
    mol: Chem.Mol
    attachable: tuple[bool, ...]
    stars: tuple[int, ...]

    @property
    def marked(self) -> bool:
        """Whether the SMILES had ``*`` attachment points."""
        return any(self.stars)

    @property
    def smiles(self) -> str:
        """The scaffold's canonical SMILES (without the attachment points)."""
        return to_smiles(self.mol) or ""

    @property
    def num_atoms(self) -> int:
        return self.mol.GetNumAtoms()

    def __str__(self) -> str:
        return self.text


def parse_scaffold(text: "str | Scaffold") -> Scaffold:
    """A :class:`Scaffold` from a SMILES string (``*`` marks attachment points)."""
    if isinstance(text, Scaffold):
        return text
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"scaffold must be a non-empty SMILES string, got {text!r}")
    text = text.strip()
    with quiet_rdkit():
        mol = Chem.MolFromSmiles(text)
    if mol is None:
        raise ValueError(f"scaffold {text!r} does not parse as SMILES (RDKit rejects it)")
    dummies = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() == 0]
    for i in dummies:
        for nb in mol.GetAtomWithIdx(i).GetNeighbors():
            if nb.GetAtomicNum() == 0:
                raise ValueError(f"scaffold {text!r}: two '*' attachment points are bonded to each other")
            nb.SetIntProp(_ATTACH, nb.GetIntProp(_ATTACH) + 1 if nb.HasProp(_ATTACH) else 1)
            if nb.GetNoImplicit():  # a bracket atom ([nH], [N+]): the '*' bond becomes one of its hydrogens
                nb.SetNumExplicitHs(nb.GetNumExplicitHs() + 1)
    if len(dummies) == mol.GetNumAtoms():
        raise ValueError(f"scaffold {text!r} has no atoms besides its '*' attachment points")
    rw = Chem.RWMol(mol)
    for i in sorted(dummies, reverse=True):
        rw.RemoveAtom(i)
    core = rw.GetMol()
    try:
        with quiet_rdkit():
            Chem.SanitizeMol(core)
    except Exception:  # RDKit raises several types for bad chemistry
        raise ValueError(f"scaffold {text!r} is not a valid molecule once its '*' points are removed") from None
    core = to_mol(core)
    if core is None:
        raise ValueError(f"scaffold {text!r} is not a valid molecule once its '*' points are removed")
    if len(Chem.GetMolFrags(core)) > 1:
        raise ValueError(f"scaffold {text!r} has several fragments; give one connected scaffold")
    if any(a.GetNumRadicalElectrons() for a in core.GetAtoms()):
        raise ValueError(f"scaffold {text!r} has radical atoms; write its hydrogens (e.g. [nH]) or use '*'")
    stars = tuple(a.GetIntProp(_ATTACH) if a.HasProp(_ATTACH) else 0 for a in core.GetAtoms())
    return Scaffold(text, core, tuple(k > 0 or not dummies for k in stars), stars)


def contains(molecule: MolLike, scaffold: "str | Scaffold") -> bool:
    """Whether ``molecule`` (a Mol or SMILES) contains the scaffold (RDKit substructure match; a
    molecule RDKit rejects contains nothing)."""
    mol = to_mol(molecule) if isinstance(molecule, str) else molecule
    if mol is None:
        return False
    return mol.HasSubstructMatch(parse_scaffold(scaffold).mol)


def holds(molecule: MolLike, scaffold: "str | Scaffold") -> bool:
    """Whether ``molecule`` (a Mol or SMILES; one RDKit rejects holds nothing) holds the scaffold.

    Without ``*`` this is :func:`contains`. With ``*`` it is the marked rule: some substructure
    match in which every unmarked scaffold atom has no bond outside the match (no substituent, no
    fused or bridging ring), and every marked atom with k ``*`` has exactly k hydrogens fewer than
    in the scaffold, i.e. its bonds outside the match fill exactly its ``*``: a bond of order k fills
    k of them, an aromatic bond (a ring fused through the ``*`` positions) one, and hydrogens written
    on a marked atom stay (``*C1CCNCC1`` takes one substituent at that carbon, not two).
    """
    sc = parse_scaffold(scaffold)
    mol = to_mol(molecule) if isinstance(molecule, str) else molecule
    if mol is None or not mol.HasSubstructMatch(sc.mol):
        return False
    if not sc.marked:
        return True
    want = [(a.GetDegree(), a.GetTotalNumHs() - k) for a, k in zip(sc.mol.GetAtoms(), sc.stars)]
    for match in mol.GetSubstructMatches(sc.mol, uniquify=False, maxMatches=100_000):
        if all(mol.GetAtomWithIdx(i).GetTotalNumHs() == h if k else mol.GetAtomWithIdx(i).GetDegree() == d
               for i, (d, h), k in zip(match, want, sc.stars)):
            return True
    return False
