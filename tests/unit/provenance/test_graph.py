from genesis_platform import Platform
from genesis_platform.provenance import Edge, Node, ProvenanceGraph


def test_lineage_walks_back_each_node_once(platform: Platform) -> None:
    graph = ProvenanceGraph()
    model, data1, data2 = (
        Node("model_version", 1),
        Node("dataset_version", 1),
        Node("dataset_version", 2),
    )
    obs = [Node("observation", i) for i in range(3)]
    with platform._db.session() as s:
        graph.record(
            s,
            [
                Edge(model, "wasDerivedFrom", data2),
                Edge(data2, "wasDerivedFrom", data1),
                Edge(data2, "hadMember", obs[2]),
                Edge(data1, "hadMember", obs[0]),
                Edge(data1, "hadMember", obs[1]),
                Edge(data2, "hadMember", obs[0]),  # a second path to the same node
            ],
        )
    with platform._db.session() as s:
        tree = graph.lineage(s, model)
        assert [e.object for e in graph.sources(s, data2)] == [data1, obs[2], obs[0]]

    def nodes(item: object) -> list[Node]:
        return [item.node] + [n for p in item.parents for n in nodes(p)]  # type: ignore[attr-defined]

    found = nodes(tree)
    assert sorted(found, key=str) == sorted({model, data1, data2, *obs}, key=str)
    assert len(found) == len(set(found))


def test_campaign_lineage_reaches_every_trial(platform: Platform) -> None:
    info = platform.campaigns.create(
        name="lin",
        space={
            "salt_molality": {"type": "real", "low": 0.1, "high": 3.0},
            "temperature_c": {"type": "int", "low": 10, "high": 60},
            "solvent": {"type": "choice", "values": ["PC"]},
        },
        objectives={"conductivity": "max"},
        planner="gp",
        runner={"station": "electrolyte", "options": {"latency_s": 0}},
        budget={"trials": 7, "parallel": 1},
        snapshot_every=3,
    ).run()
    assert info.model is not None
    name, version = info.model.split("@")
    tree = platform.lineage.tree("model", name, int(version))
    text = str(tree)
    for number in range(1, 8):
        assert f"trial {number} of campaign {info.id}" in text
    assert text.count("wasGeneratedBy") == 7  # each observation once, though 3 versions hold it
