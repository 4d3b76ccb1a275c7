"""Shared test fixtures."""

#: Drug-like SMILES from MOSES-style chemistry, used by the metric tests.
DRUGS = [
    "CC1C2CCC(C2)C1CN(CCO)C(=O)c1ccc(Cl)cc1", "COc1ccc(-c2cc(=O)c3c(O)c(OC)c(OC)cc3o2)cc1O",
    "CCOC(=O)c1ncn2c1CN(C)C(=O)c1cc(F)ccc1-2", "Clc1ccccc1-c1nc(-c2ccncc2)no1",
    "CC(C)(Oc1ccc(Cl)cc1)C(=O)OCc1cccc(CO)n1", "Cc1nc2c(OCc3ccccc3)cccn2c1CC#N",
    "O=C1c2cccnc2CN1Cc1ccccc1Cl", "O=C(NC1CCc2ccccc2C1)c1ccncc1", "OC(Cn1cncn1)(Cn1cncn1)c1ccc(F)cc1F",
    "Cc1[nH]cnc1Cc1nc(-c2ccccc2)cs1", "COc1ccc(-c2nc3n(c2-c2ccncc2)CCC3)cc1",
    "CC(=O)NC(C(=O)NCc1ccccc1)c1ccco1", "COc1ccc(C2CNC(=O)C2)cc1OC1CCCC1",
    "O=C(NCCc1cccc2ccccc12)C1CCC1", "Cc1ccc(S(=O)(=O)NCc2ccccc2)cc1", "CC(=O)Nc1ccc(S(=O)(=O)NC2CCCCC2)cc1",
    "CCN(CC)C(=O)c1ccc(NC(C)=O)c(Cl)c1", "Cc1ccccc1C(=O)Nc1ccccc1C(=O)N1CCCC1",
    "Fc1ccccc1CSc1nnnn1-c1ccc2c(c1)OCO2", "CS(=O)(=O)N(Cc1ccccc1)Cc1ccccc1",
    "CC1CCCN(C(=O)c2ccc(Br)cc2)C1", "COc1ccc(CNC(=O)c2ccccc2Cl)cc1", "Cc1cc(Br)ccc1NC(=O)c1cccnc1",
    "O=C(c1ccco1)N1CCN(c2cccc(Cl)c2)CC1", "COc1cccc(C(=O)Nc2nc3ccccc3s2)c1",
]


#: Python source that makes ``import rdkit`` fail as on a bare GPU machine (prepend it to a ``python -c`` program).
NO_RDKIT = (
    "import sys, builtins; real = builtins.__import__\n"
    "def imp(name, *a, **k):\n"
    "    if name == 'rdkit' or name.startswith('rdkit.'): raise ModuleNotFoundError(\"No module named 'rdkit'\", name='rdkit')\n"
    "    return real(name, *a, **k)\n"
    "builtins.__import__ = imp\n"
)
