-- The registry: 一单 (inspection items, versioned), 两库 (targets, inspectors)
-- and 一细则 (the agency's rules).

CREATE TABLE departments (
    id   INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL
) STRICT;

CREATE TABLE items (
    id              INTEGER PRIMARY KEY,
    code            TEXT NOT NULL UNIQUE,
    current_version INTEGER NOT NULL
) STRICT;

-- Each change to an item makes a new row; old rows stay, because tasks and
-- records refer to the version they used.
CREATE TABLE item_versions (
    item_id        INTEGER NOT NULL REFERENCES items(id),
    version        INTEGER NOT NULL,
    name           TEXT NOT NULL,
    legal_basis    TEXT NOT NULL CHECK (length(legal_basis) > 0),
    department_id  INTEGER NOT NULL REFERENCES departments(id),
    target_type    TEXT NOT NULL,
    methods        TEXT NOT NULL,  -- JSON array of method codes
    content        TEXT NOT NULL,  -- what is checked (检查内容)
    class          TEXT NOT NULL CHECK (class IN ('key', 'general')),
    default_ratio  REAL NOT NULL,
    frequency      INTEGER NOT NULL, -- times per year the item is run
    qualification  TEXT,            -- expertise an inspector needs, if any
    created_at     TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    PRIMARY KEY (item_id, version)
) STRICT;

CREATE TABLE targets (
    id                 INTEGER PRIMARY KEY,
    uscc               TEXT NOT NULL UNIQUE,
    name               TEXT NOT NULL,
    target_type        TEXT NOT NULL,
    industry           TEXT NOT NULL,
    region             TEXT NOT NULL,
    address            TEXT NOT NULL,
    legal_rep          TEXT NOT NULL,
    reg_status         TEXT NOT NULL,
    risk_class         TEXT NOT NULL CHECK (risk_class IN ('A', 'B', 'C', 'D')),
    flag_abnormal      INTEGER NOT NULL DEFAULT 0, -- 经营异常名录
    flag_serious       INTEGER NOT NULL DEFAULT 0, -- 严重违法失信
    complaints         INTEGER NOT NULL DEFAULT 0,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
) STRICT;
CREATE INDEX targets_region ON targets(region);
CREATE INDEX targets_industry ON targets(industry);
CREATE INDEX targets_risk ON targets(risk_class);
CREATE INDEX targets_name ON targets(name);

CREATE TABLE inspectors (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER UNIQUE REFERENCES users(id),
    name          TEXT NOT NULL,
    cert_no       TEXT NOT NULL UNIQUE CHECK (length(cert_no) > 0), -- 执法证号
    department_id INTEGER NOT NULL REFERENCES departments(id),
    expertise     TEXT NOT NULL, -- JSON array of qualification names
    region        TEXT NOT NULL,
    active        INTEGER NOT NULL DEFAULT 1,
    expert        INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;

-- Declared conflicts of interest (回避).
CREATE TABLE inspector_conflicts (
    inspector_id INTEGER NOT NULL REFERENCES inspectors(id),
    target_id    INTEGER NOT NULL REFERENCES targets(id),
    reason       TEXT NOT NULL,
    declared_at  TEXT NOT NULL,
    PRIMARY KEY (inspector_id, target_id)
) STRICT;
CREATE INDEX inspector_conflicts_target ON inspector_conflicts(target_id);

-- The agency's rules (细则). One current row; changes are audited.
CREATE TABLE rules (
    id                         INTEGER PRIMARY KEY CHECK (id = 1),
    ratio_a                    REAL NOT NULL,
    ratio_b                    REAL NOT NULL,
    ratio_c                    REAL NOT NULL,
    ratio_d                    REAL NOT NULL,
    group_size                 INTEGER NOT NULL CHECK (group_size >= 2),
    frequency_cap              INTEGER NOT NULL CHECK (frequency_cap >= 1),
    result_publication_days    INTEGER NOT NULL,
    list_publication_days      INTEGER NOT NULL,
    abnormal_list_days         INTEGER NOT NULL,
    must_include_serious       INTEGER NOT NULL,
    must_include_abnormal      INTEGER NOT NULL,
    must_include_complaints    INTEGER NOT NULL,
    updated_at                 TEXT NOT NULL
) STRICT;
INSERT INTO rules VALUES (1, 0.03, 0.05, 0.20, 0.60, 2, 2, 20, 5, 10, 1, 0, 1, '1970-01-01T00:00:00Z');
