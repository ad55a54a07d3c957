//! The closed vocabularies of an inspection record: methods, statutory result categories,
//! follow-up measures and review states (see `shared/reference/result-categories.md`).

use serde::{Deserialize, Serialize};

macro_rules! vocabulary {
    (
        $(#[$doc:meta])* $name:ident {
            $( $(#[$vdoc:meta])* $variant:ident = $code:literal, $label:literal; )+
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vdoc])* $variant, )+
        }

        impl $name {
            /// Every value, in the official order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable code stored in documents and sent over the wire.
            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code,)+ }
            }

            /// The official Chinese wording.
            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $label,)+ }
            }

            /// Parses a code; `None` for anything not in the list.
            pub fn from_code(code: &str) -> Option<Self> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}

vocabulary!(
    /// How an item was checked (核查方式); a record may use several per item.
    Method {
        /// 实地检查
        OnSite = "on_site", "实地检查";
        /// 书面检查
        Documentary = "documentary", "书面检查";
        /// 行政部门检查结果或专业意见
        OfficialOpinion = "official_opinion", "行政部门检查结果或专业意见";
        /// 检验检测
        Testing = "testing", "检验检测";
        /// 网络监测
        OnlineMonitoring = "online_monitoring", "网络监测";
        /// 委托专业机构辅助
        ProfessionalAgency = "professional_agency", "委托专业机构辅助";
    }
);

vocabulary!(
    /// The statutory result categories (检查结果); a record may carry several.
    ResultCategory {
        /// 未发现问题
        NoProblem = "no_problem", "未发现问题";
        /// 未按规定公示应当公示的信息
        NotPublicized = "not_publicized", "未按规定公示应当公示的信息";
        /// 公示信息隐瞒真实情况、弄虚作假
        FalsePublicity = "false_publicity", "公示信息隐瞒真实情况、弄虚作假";
        /// 通过登记的住所（经营场所）无法联系
        Unreachable = "unreachable", "通过登记的住所（经营场所）无法联系";
        /// 发现问题已责令改正
        Rectified = "rectified", "发现问题已责令改正";
        /// 不配合检查情节严重
        Uncooperative = "uncooperative", "不配合检查情节严重";
        /// 未发现开展本次抽查涉及的经营活动
        NoActivity = "no_activity", "未发现开展本次抽查涉及的经营活动";
        /// 发现问题待后续处理
        PendingFollowup = "pending_followup", "发现问题待后续处理";
        /// 已关闭停业或正在组织清算
        Closed = "closed", "已关闭停业或正在组织清算";
        /// 已注销、被吊销、被撤销或已迁出
        Deregistered = "deregistered", "已注销、被吊销、被撤销或已迁出";
    }
);

vocabulary!(
    /// Follow-up measures (后续处置措施).
    FollowUpMeasure {
        /// 无需后续处置
        None = "none", "无需后续处置";
        /// 责令改正, always with a deadline
        OrderRectification = "order_rectification", "责令改正";
        /// 移送办案机构
        ReferCaseUnit = "refer_case_unit", "移送办案机构";
        /// 抄告相关部门
        NotifyDepartment = "notify_department", "抄告相关部门";
        /// 移送公安/司法机关
        ReferPolice = "refer_police", "移送公安/司法机关";
        /// 其他
        Other = "other", "其他";
    }
);

vocabulary!(
    /// Where a record stands in review, as written by the server.
    ReviewState {
        /// Drawn and assigned; inspectors are filling it in.
        Open = "open", "待检查";
        /// The inspectors submitted it; a supervisor is to review it.
        Submitted = "submitted", "已提交";
        /// A supervisor sent it back with comments; inspectors may edit and submit again.
        Returned = "returned", "已退回";
        /// A supervisor approved it.
        Approved = "approved", "已审核";
        /// Its result is public.
        Published = "published", "已公示";
    }
);

impl FollowUpMeasure {
    /// Whether this measure is meaningless without a deadline (责令改正 is: 限期改正).
    pub fn needs_deadline(self) -> bool {
        matches!(self, FollowUpMeasure::OrderRectification)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_refused() {
        for m in Method::ALL {
            assert_eq!(Method::from_code(m.code()), Some(*m));
        }
        for r in ResultCategory::ALL {
            assert_eq!(ResultCategory::from_code(r.code()), Some(*r));
            let json = serde_json::to_string(r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.code()));
        }
        assert_eq!(ResultCategory::ALL.len(), 10);
        assert_eq!(ResultCategory::from_code("fine"), None);
        assert_eq!(ResultCategory::Rectified.label(), "发现问题已责令改正");
    }
}
