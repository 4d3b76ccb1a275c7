"""MOSES data files: loading, errors, the fetch command (network-free with a fake wheel)."""
import subprocess
import zipfile

import pytest
from rdkit import Chem

from molgen.datasets import moses as D
from molgen.metrics.moses import filter_patterns

have_files = all((D.moses_dir() / name).is_file() for name in D._MEMBERS)
needs_moses = pytest.mark.skipif(not have_files,
                                 reason="MOSES files not fetched; run `python -m molgen.datasets.moses fetch`")


@needs_moses
def test_split_sizes_and_first_molecule():
    test = D.load_moses("test")
    assert len(test) == 176_074
    assert test[0] == "CC1C2CCC(C2)C1CN(CCO)C(=O)c1ccc(Cl)cc1"
    assert len(D.load_moses("test_scaffolds")) == 176_225
    assert len(D.load_moses("train")) == 1_584_663


@needs_moses
def test_loaded_lists_are_fresh_copies_of_valid_smiles():
    first = D.load_moses("test")
    first.clear()
    test = D.load_moses("test")
    assert len(test) == 176_074
    assert all(Chem.MolFromSmiles(s) is not None for s in test[:200])


@needs_moses
def test_filter_patterns():
    mcf, pains = filter_patterns()
    assert (len(mcf), len(pains)) == (22, 480)
    assert all(isinstance(p, Chem.Mol) for p in mcf + pains)
    aldehyde = Chem.AddHs(Chem.MolFromSmiles("CCC=O"))
    assert any(aldehyde.HasSubstructMatch(p) for p in mcf)


def test_unknown_split_lists_the_choices():
    with pytest.raises(ValueError, match="train, test, test_scaffolds"):
        D.load_moses("valid")


def test_missing_files_say_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("MOLGEN_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="python -m molgen.datasets.moses fetch"):
        D.load_moses("test")
    with pytest.raises(FileNotFoundError, match="python -m molgen.datasets.moses fetch"):
        filter_patterns()


def _fake_pip(members):
    """A stand-in for `pip download` that writes a small molsets wheel into the -d folder."""
    def run(cmd, **kwargs):
        dest = cmd[cmd.index("-d") + 1]
        with zipfile.ZipFile(f"{dest}/molsets-0.3.1-py3-none-any.whl", "w") as wheel:
            for member, content in members.items():
                wheel.writestr(member, content)
        return subprocess.CompletedProcess(cmd, 0, "", "")
    return run


def test_fetch_extracts_the_files_from_the_wheel(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOLGEN_CACHE", str(tmp_path))
    import gzip
    members = {member: b"" for member in D._MEMBERS.values()}
    for split in D.SPLITS:
        members[f"moses/dataset/data/{split}.csv.gz"] = gzip.compress(b"SMILES,SPLIT\nCCO,x\nc1ccccc1,x\n")
    members["moses/metrics/mcf.csv"] = b"names,smarts\nMCF7,[#6&!H0]=[#8]\n"
    members["moses/metrics/wehi_pains.csv"] = b'"[#7]=[#7]"   ,"<regId=azo>"\n'
    calls = []
    fake = _fake_pip(members)
    monkeypatch.setattr(D.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or fake(cmd, **kw))
    assert D.main(["fetch"]) == 0
    assert str(tmp_path / "moses") in capsys.readouterr().out
    assert D.load_moses("train") == ["CCO", "c1ccccc1"]
    mcf, pains = filter_patterns()
    assert len(mcf) == len(pains) == 1
    assert D.main(["fetch"]) == 0 and len(calls) == 1  # second call finds the files: no download
    assert "--no-deps" in calls[0] and "molsets==0.3.1" in calls[0]


def test_fetch_reports_a_pip_failure_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOLGEN_CACHE", str(tmp_path))
    failed = subprocess.CompletedProcess([], 1, "", "Looking in indexes...\nERROR: No matching distribution\n")
    monkeypatch.setattr(D.subprocess, "run", lambda cmd, **kw: failed)
    assert D.main(["fetch"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "No matching distribution" in err[0]
