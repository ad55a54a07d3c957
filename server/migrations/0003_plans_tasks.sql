-- Annual plans (抽查计划) and their tasks (抽查任务).

CREATE TABLE plans (
    id            INTEGER PRIMARY KEY,
    number        TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    year          INTEGER NOT NULL,
    department_id INTEGER NOT NULL REFERENCES departments(id),
    published_at  TEXT,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL
) STRICT;

CREATE TABLE tasks (
    id            INTEGER PRIMARY KEY,
    plan_id       INTEGER NOT NULL REFERENCES plans(id),
    number        TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    directed      INTEGER NOT NULL,   -- 1 = 定向, 0 = 不定向
    conditions    TEXT NOT NULL,      -- JSON object; empty for undirected tasks
    ratio         REAL,
    count         INTEGER,
    window_start  TEXT NOT NULL,
    window_end    TEXT NOT NULL,
    department_id INTEGER NOT NULL REFERENCES departments(id),
    joint         INTEGER NOT NULL,   -- 联合抽查
    published_at  TEXT,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    CHECK ((ratio IS NULL) <> (count IS NULL)),
    CHECK (window_start <= window_end)
) STRICT;
CREATE INDEX tasks_plan ON tasks(plan_id);

-- Items of a task, pinned to the version in force when the task was made, and
-- the department that checks each (several departments for a joint task).
CREATE TABLE task_items (
    task_id       INTEGER NOT NULL REFERENCES tasks(id),
    item_id       INTEGER NOT NULL REFERENCES items(id),
    item_version  INTEGER NOT NULL,
    department_id INTEGER NOT NULL REFERENCES departments(id),
    PRIMARY KEY (task_id, item_id),
    FOREIGN KEY (item_id, item_version) REFERENCES item_versions(item_id, version)
) STRICT;
