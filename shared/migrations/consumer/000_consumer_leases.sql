-- Fencing: the instance that owns a partition, and the generation of its claim. A consumer
-- claims its partitions on assignment (generation + 1) before reading its offsets, and every
-- commit checks its claims in the same transaction: a stale instance that lost partitions in
-- a rebalance cannot write read-model rows for them.
CREATE TABLE partition_leases (
    consumer    text   NOT NULL,
    topic       text   NOT NULL,
    partition   int    NOT NULL,
    owner       text   NOT NULL,
    generation  bigint NOT NULL,
    PRIMARY KEY (consumer, topic, partition)
);
